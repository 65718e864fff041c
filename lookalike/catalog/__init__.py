"""Catalogues: what is for sale, as `Item`s (id, image paths or URLs, metadata fields).

`load_catalogue(path)` reads any of the three layouts:

- a folder: one sub-folder per item (id = sub-folder name), or image files directly inside it
  (one item each, id = file stem) -- see `lookalike.catalog.folder`;
- `*.jsonl`: one JSON object per line -- see `lookalike.catalog.manifest.load_jsonl`;
- `*.csv`: columns `id,image,...`, one row per image -- see `lookalike.catalog.manifest.load_csv`.

Rules shared by every layout:

- item ids are strings (a number in JSON becomes `str(number)`); lines that name an id again add
  their images to that item (first value wins for each field);
- images are absolute local paths or http(s) URLs; they are not opened here (decoding reports a
  missing or broken file as `Skipped` later, so loading a catalogue stays fast and side-effect free);
- a bad line or folder is recorded as `Skipped(source, reason)` and never aborts the load;
- field names become safe payload keys: see `lookalike.catalog.manifest.safe_key`. A field whose
  name is one of RESERVED_KEYS (the payload keys lookalike writes itself) is renamed `field_<name>`.

Raises CatalogueError only when the catalogue as a whole cannot be read (missing, unknown type,
CSV without an `id` or `image` column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import CatalogueError
from lookalike.types import RESERVED_PAYLOAD_KEYS, Item, Skipped

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
)
"""File suffixes (lower case) a folder catalogue picks up as images."""

RESERVED_KEYS: frozenset[str] = RESERVED_PAYLOAD_KEYS
"""Payload keys lookalike writes on every point; catalogue fields may not overwrite them."""

RESERVED_PREFIX = "field_"
"""What a catalogue field named like a reserved key (or not starting with a letter) gets in front."""


@dataclass(frozen=True)
class Catalogue:
    """A loaded catalogue.

    items: in the order they first appear (folder: sorted by name), ids unique.
    skipped: lines, rows or folders left out, with the reason.
    source: the catalogue path as given (folder, .jsonl or .csv).
    root: the folder relative image paths were resolved against (absolute).
    """

    items: tuple[Item, ...]
    skipped: tuple[Skipped, ...]
    source: str
    root: Path

    @property
    def image_count(self) -> int:
        """Number of image references over all items."""
        return sum(len(item.images) for item in self.items)


def load_catalogue(path: str | Path) -> Catalogue:
    """Read a folder, `.jsonl` or `.csv` catalogue (dispatch on what `path` is).

    Raises CatalogueError when `path` does not exist, has an unknown suffix, or cannot be read.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CatalogueError(f"catalogue not found: {path}")
    if path.is_dir():
        from lookalike.catalog.folder import load_folder

        return load_folder(path)
    from lookalike.catalog.manifest import load_csv, load_jsonl

    match path.suffix.lower():
        case ".jsonl" | ".ndjson":
            return load_jsonl(path)
        case ".csv":
            return load_csv(path)
        case suffix:
            raise CatalogueError(
                f"unknown catalogue type {suffix or '(no suffix)'!r} for {path}: "
                "expected a folder, a .jsonl or a .csv file"
            )


__all__ = [
    "IMAGE_EXTENSIONS",
    "RESERVED_KEYS",
    "RESERVED_PREFIX",
    "Catalogue",
    "load_catalogue",
]


def no_items_message(path: Path, skipped: list[Skipped] | tuple[Skipped, ...]) -> str:
    """Why a catalogue gave no item, and what a catalogue looks like, for people."""
    if path.is_dir():
        shape = (
            "a folder catalogue holds one sub-folder of photos per item (shop/SKU123/front.jpg), "
            f"or photos directly in it (one item each); images are {', '.join(IMAGE_EXTENSIONS)}"
        )
    else:
        shape = "a manifest holds one item per line or row, with an id and its images"
    text = f"no items in {path}: {shape}"
    if skipped:
        first = skipped[0]
        text += f"; {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} left out, first "
        text += f"{first.source}: {first.reason}"
    return text
