"""A folder of photos as a catalogue.

    shop/
      red-dress/          -> item "red-dress": every image below it, at any depth, sorted by path
        front.jpg
        back/detail.png
      blue-shirt.jpg      -> item "blue-shirt" (a file directly in the folder is an item of its own)

- images are files whose suffix (any case) is in IMAGE_EXTENSIONS; other files are ignored;
- hidden files and folders (name starting with `.`, e.g. `.DS_Store`, `._photo.jpg`) are ignored;
- symlinked files are followed, symlinked folders are not descended (no loops, no escaping the tree);
- fields: {"title": <folder name or file stem>};
- names that give the same id (folder `a/` and file `a.jpg`, or `a.jpg` and `a.png`) are one item
  with all their images;
- a sub-folder without images, or one that cannot be listed, is recorded as Skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.catalog import IMAGE_EXTENSIONS, Catalogue
from lookalike.catalog.manifest import ItemCollector
from lookalike.errors import CatalogueError
from lookalike.types import Skipped


def load_folder(root: Path) -> Catalogue:
    """Scan `root` (see the module docstring). Raises CatalogueError if `root` cannot be listed."""
    base = Path(os.path.abspath(root))
    try:
        entries = sorted(base.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise CatalogueError(
            f"cannot list catalogue folder {base}: {exc.strerror or exc}"
        ) from None
    collector, skipped = ItemCollector(), []
    for entry in entries:
        if _hidden(entry.name):
            continue
        if entry.is_dir():
            images, errors = _images_under(entry)
            skipped.extend(errors)
            if images:
                collector.add(entry.name, images, {"title": entry.name})
            elif not errors:
                skipped.append(Skipped(str(entry), "folder holds no image files"))
        elif is_image_name(entry.name) and entry.is_file():
            collector.add(entry.stem, [str(entry)], {"title": entry.stem})
    return Catalogue(collector.items(), tuple(skipped), str(root), base)


def is_image_name(name: str) -> bool:
    """True for a visible file name with an image suffix (case-insensitive)."""
    return not _hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _images_under(folder: Path) -> tuple[list[str], list[Skipped]]:
    """Absolute paths of the images below `folder`, sorted by their path relative to it."""
    found: list[tuple[str, str]] = []
    errors: list[Skipped] = []

    def on_error(exc: OSError) -> None:
        errors.append(Skipped(str(exc.filename or folder), f"cannot list folder: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=False):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]  # prune: os.walk honours the edit
        for name in filenames:
            if is_image_name(name):
                path = os.path.join(dirpath, name)
                found.append((Path(os.path.relpath(path, folder)).as_posix(), path))
    return [path for _, path in sorted(found)], errors
