"""Pictures for people: the detected boxes drawn on a photo, and an HTML page of the people found.

Both write only under the folder they are given and never fetch URLs (a URL photo gets a
placeholder in the page). Face thumbnails are cut from the photos at write time, so a page made
after `forget` no longer shows the forgotten faces; the page itself holds no face vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from lookalike.evaluation.report import escape
from lookalike.pipeline.decode import is_url

if TYPE_CHECKING:
    from lookalike.faces.values import Person

BoxLike = Sequence[float]
THUMB = 112
"""Side of a face thumbnail in the clusters page, in pixels."""
_COLOURS = (
    (255, 64, 64),
    (64, 200, 64),
    (64, 128, 255),
    (255, 200, 0),
    (255, 64, 255),
    (0, 220, 220),
)


def open_photo(source: str, max_side: int | None = None) -> tuple[Image.Image, float]:
    """A local photo as RGB, EXIF-rotated (the frame the index's boxes are in), and the factor
    from those box coordinates to its pixels: < 1 when `max_side` let JPEG decode at reduced size.
    """
    with Image.open(source) as im:
        full_width = _oriented_size(im)[0]
        if max_side:
            im.draft("RGB", (max_side, max_side))
        out = ImageOps.exif_transpose(im).convert("RGB")
    return out, out.width / full_width


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def draw_boxes(
    image: Image.Image,
    boxes: Sequence[BoxLike],
    labels: Sequence[str] | None = None,
    *,
    max_side: int = 1200,
) -> Image.Image:
    """A copy of `image` no larger than `max_side`, with each box (pixels of `image`) drawn and
    labelled (default: its number, 0 = first)."""
    scale = min(1.0, max_side / max(image.size))
    out = image.convert("RGB")
    if scale < 1.0:
        out = out.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.LANCZOS,
        )
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(out.size) / 40)))
    for i, box in enumerate(boxes):
        colour = _COLOURS[i % len(_COLOURS)]
        x1, y1, x2, y2 = (v * scale for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        text = labels[i] if labels is not None else str(i)
        tx, ty = x1 + width, max(0.0, y1 - font.size - 2 * width) if y1 > font.size else y1 + width  # type: ignore[union-attr]  # load_default(size=) gives a FreeTypeFont on Pillow >= 10.3
        bbox = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle(bbox, fill=colour)
        draw.text((tx, ty), text, fill=(0, 0, 0), font=font)
    return out


def save_boxes_picture(
    photo: str | Path,
    boxes: Sequence[BoxLike],
    dest: Path,
    *,
    labels: Sequence[str] | None = None,
    max_side: int = 1000,
    quality: int = 82,
) -> Path:
    """Write `photo` with its face boxes (pixels of the EXIF-rotated photo) as a JPEG at `dest`."""
    image, scale = open_photo(str(photo), max_side)
    scaled = [[v * scale for v in box] for box in boxes]
    picture = draw_boxes(image, scaled, labels, max_side=max_side)
    dest.parent.mkdir(parents=True, exist_ok=True)
    picture.save(dest, "JPEG", quality=quality, optimize=True)
    return dest


def face_thumbnail(
    photo: Image.Image, box: BoxLike, size: int = THUMB, margin: float = 0.25
) -> Image.Image:
    """A square crop around `box` with `margin` x its size on each side, resized to `size`."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    crop = photo.crop(
        (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    )
    return crop.resize((size, size), Image.Resampling.LANCZOS)


def write_people_page(
    dest_dir: Path,
    people: Sequence[Person],
    *,
    title: str = "People",
    max_faces: int = 24,
) -> Path:
    """Write `dest_dir/index.html` (+ `faces/` thumbnails): one row per person, largest first,
    with up to `max_faces` face thumbnails each (photo name on hover). Returns the page's path.
    """
    dest_dir = Path(dest_dir)
    thumbs = dest_dir / "faces"
    thumbs.mkdir(parents=True, exist_ok=True)
    opened: dict[str, tuple[Image.Image, float] | None] = {}

    def thumb(photo: str, box: BoxLike) -> str | None:
        if photo not in opened:
            try:
                opened[photo] = None if is_url(photo) else open_photo(photo, 1024)
            except Exception:  # unreadable or gone since indexing: a placeholder
                opened[photo] = None
            if len(opened) > 64:  # keep memory bounded on big collections
                first = next(iter(opened))
                if first != photo:
                    opened.pop(first)
        entry = opened.get(photo)
        if entry is None:
            return None
        image, scale = entry
        key = hashlib.sha1(f"{photo}|{list(box)}".encode()).hexdigest()[:20] + ".jpg"
        face_thumbnail(image, [v * scale for v in box]).save(thumbs / key, "JPEG", quality=80)
        return f"faces/{key}"

    rows = []
    for person in people:
        cells = []
        for face in person.faces[:max_faces]:
            src = thumb(face.photo, face.box)
            name = escape(Path(face.photo).name)
            if src is None:
                cells.append(f'<div class="ph" title="{escape(face.photo)}">{name}</div>')
            else:
                cells.append(f'<img src="{escape(src)}" alt="{name}" title="{escape(face.photo)}">')
        more = len(person.faces) - max_faces
        extra = f'<span class="more">+{more} more</span>' if more > 0 else ""
        rows.append(
            f'<section id="person-{person.person_id}"><h2>Person {person.person_id} '
            f"<small>{len(person.faces)} faces in {len(person.photos)} photos</small></h2>"
            f'<div class="faces">{"".join(cells)}{extra}</div></section>'
        )
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        f"<p>{len(people)} people, {sum(len(p.faces) for p in people)} faces. Forget one with "
        "<code>lookalike faces forget --person ID</code>.</p>"
        f"{''.join(rows)}</body></html>\n"
    )
    out = dest_dir / "index.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


_CSS = f"""
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; }}
h2 {{ font-size: 1.1rem; margin: 1.5rem 0 .4rem; }} small {{ color: #656d76; font-weight: normal; }}
.faces {{ display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }}
.faces img, .ph {{ width: {THUMB}px; height: {THUMB}px; border-radius: 4px; object-fit: cover; }}
.ph {{ display: flex; align-items: center; justify-content: center; background: #f6f8fa;
       font-size: 11px; text-align: center; overflow-wrap: anywhere; }}
.more {{ color: #656d76; margin-left: .5rem; }}
"""
