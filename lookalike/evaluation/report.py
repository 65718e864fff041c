"""Small, self-contained HTML pages of photos: evaluation misses, duplicate groups, outliers, people.

Thumbnails are made once per source into `thumbs/` beside the page, so a report folder can be
moved or zipped; pages use no external resources and never fetch URLs; all text is escaped.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

from PIL import Image, ImageOps

THUMB_SIZE = 160
"""Longest side of a thumbnail, in pixels."""


def _open_rgb(source: str) -> Image.Image:
    with Image.open(source) as opened:
        # draft() lets the JPEG decoder scale down by up to 8x while decoding: far less work for
        # a 160 px thumbnail of a 12 MP photo. No-op for other formats.
        opened.draft("RGB", (THUMB_SIZE * 2, THUMB_SIZE * 2))
        image = ImageOps.exif_transpose(opened)
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            # JPEG has no alpha: flatten cut-outs onto white rather than the black convert() gives.
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image.convert("RGB")


class Thumbs:
    """Makes each source image's thumbnail once, under `thumbs/`, and answers its relative URL."""

    def __init__(self, dest_dir: Path) -> None:
        self.folder = dest_dir / "thumbs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._done: dict[str, str | None] = {}

    def __call__(self, source: str | None) -> str | None:
        """Relative `thumbs/<name>.jpg` for `source`, or None when it cannot be read."""
        if not source:
            return None
        if source not in self._done:
            self._done[source] = self._make(source)
        return self._done[source]

    def _make(self, source: str) -> str | None:
        # The report never goes to the network: a URL gets a placeholder, not a fetch.
        if source.lower().startswith(("http://", "https://")):
            return None
        name = hashlib.sha1(source.encode("utf-8")).hexdigest()[:20] + ".jpg"
        try:
            image = _open_rgb(source)
            image.thumbnail((THUMB_SIZE, THUMB_SIZE))
            image.save(self.folder / name, "JPEG", quality=80, optimize=True)
        except Exception:  # any undecodable file (or decompression bomb) gets a placeholder
            return None
        return f"thumbs/{name}"


CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa;
        --ok: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); margin: 2rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line);
     padding-bottom: .3rem; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: .4rem .6rem; vertical-align: top; }
th { background: var(--bg); text-align: left; }
table.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.misses { width: 100%; }
.cards { display: flex; gap: .75rem; flex-wrap: wrap; }
figure { margin: 0; width: 168px; }
figure img, .ph { display: block; width: 160px; height: 160px; object-fit: contain;
                  background: var(--bg); border: 1px solid var(--line); border-radius: 4px; }
.ph { display: flex; align-items: center; justify-content: center; color: var(--muted);
      font-size: 12px; text-align: center; padding: .5rem; }
figcaption { font-size: 12px; margin-top: .25rem; overflow-wrap: anywhere; }
figure.wrong img, figure.wrong .ph { border: 2px solid var(--bad); }
figure.right img, figure.right .ph { border: 2px solid var(--ok); }
.muted { color: var(--muted); }
.rank { font-weight: 600; }
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def figure(thumb: str | None, source: str, caption: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    if thumb is None:
        picture = f'<div class="ph" title="{escape(source)}">image unavailable</div>'
    else:
        picture = f'<img src="{escape(thumb)}" alt="" title="{escape(source)}" loading="lazy">'
    return f"<figure{cls}>{picture}<figcaption>{caption}</figcaption></figure>"


def write_page(path: Path, title: str, body: str, *, css: str = "") -> Path:
    """Write a complete HTML page (title as <h1>, then `body`) atomically; return `path`."""
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}{css}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader (or a crash) never sees half a page.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
