"""Which photos an index run looks at: a folder's photos, and the photo-like files it cannot read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from lookalike.pipeline.decode import is_url
from lookalike.types import Skipped


def scan_photos(photos: Path | str | Iterable[Path | str]) -> tuple[list[str], list[Skipped]]:
    """Absolute paths (or URLs) of the photos to index, sorted and unique, and what was skipped.

    A folder is searched recursively (hidden files and folders ignored, folder symlinks not
    followed); a file is one photo. Raises CatalogueError when a folder cannot be listed.
    """
    from lookalike.catalog.folder import is_image_name
    from lookalike.errors import CatalogueError

    items = [photos] if isinstance(photos, str | Path) else list(photos)
    found: list[str] = []
    skipped: list[Skipped] = []
    for item in items:
        text = str(item)
        if is_url(text):
            found.append(text)
            continue
        path = Path(os.path.abspath(text))
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise CatalogueError(f"cannot list photo folder {path}")
            for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for n in filenames:
                    if is_image_name(n):
                        found.append(os.path.join(dirpath, n))
                    elif (why := unsupported_photo(n)) is not None:
                        skipped.append(Skipped(os.path.join(dirpath, n), why))
        elif path.is_file():
            found.append(str(path))
        else:
            skipped.append(Skipped(str(path), "file not found"))
    return sorted(dict.fromkeys(found)), skipped


RAW_SUFFIXES = frozenset(
    [
        ".3fr",
        ".arw",
        ".cr2",
        ".cr3",
        ".crw",
        ".dcr",
        ".dng",
        ".erf",
        ".kdc",
        ".mef",
        ".mos",
        ".mrw",
        ".nef",
        ".nrw",
        ".orf",
        ".pef",
        ".raf",
        ".raw",
        ".rw2",
        ".rwl",
        ".sr2",
        ".srf",
        ".srw",
        ".x3f",
    ]
)
"""Camera RAW files: photos, but no decoder here reads them."""


def unsupported_photo(name: str) -> str | None:
    """Why a file that looks like a photo (a camera RAW or another image suffix Pillow knows)
    is not indexed, or None for other files (sidecars, videos, notes: not photos at all).

    Such files are reported as skipped rather than passed over in silence, so a photographer
    learns that those photos were not searched.
    """
    from PIL import Image as PILImage

    if name.startswith("."):
        return None
    suffix = os.path.splitext(name)[1].lower()
    if suffix in RAW_SUFFIXES:
        return f"camera RAW ({suffix}) is not read: export the photos as JPEG or TIFF"
    if suffix in PILImage.registered_extensions() and suffix not in (".pdf", ".ps", ".eps"):
        return f"{suffix} images are not read (formats read: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF, PGM/PPM)"
    return None


def normalise(photo: str) -> str:
    """How a photo is keyed in the index: a URL as given, a file by its absolute path."""
    return photo if is_url(photo) else os.path.abspath(photo)
