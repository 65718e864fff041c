"""A folder of photos as a catalogue.

    shop/
      red-dress/          -> item "red-dress": every image below it, at any depth, sorted by path
        front.jpg
        back/detail.png
      blue-shirt.jpg      -> item "blue-shirt" (a file directly in the folder is an item of its own)

- images are files whose suffix (any case) is in IMAGE_EXTENSIONS; other files are ignored;
- hidden files and folders (name starting with `.`, e.g. `.DS_Store`, `._photo.jpg`) are ignored;
- symlinked files are followed, symlinked folders are not descended (no loops, no escaping the tree);
- fields: {"title": <folder name or file stem>}; a sub-folder may hold an `item.json` object
  with the item's fields as a manifest line has them (`{"title": "Linen shirt", "price": 39.9,
  "brand": "..."}`; `id`, `images` and `image` are ignored: the folder decides those); an
  unreadable `item.json` is recorded as Skipped and the item keeps its folder name as title;
- names that give the same id (folder `a/` and file `a.jpg`, or `a.jpg` and `a.png`) are one item
  with all their images;
- a sub-folder without images, or one that cannot be listed, is recorded as Skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lookalike.catalog import IMAGE_EXTENSIONS, Catalogue, manifest
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
        if entry.name.startswith("."):  # hidden
            continue
        if entry.is_dir():
            images, errors = _images_under(entry)
            skipped.extend(errors)
            if images:
                fields, problem = item_fields(entry)
                if problem is not None:
                    skipped.append(problem)
                collector.add(entry.name, images, fields)
            elif not errors:
                skipped.append(Skipped(str(entry), "folder holds no image files"))
        elif is_image_name(entry.name) and entry.is_file():
            collector.add(entry.stem, [str(entry)], {"title": entry.stem})
    return Catalogue(collector.items(), tuple(skipped), str(root), base)


ITEM_FILE = "item.json"
"""The optional file of an item's fields inside its sub-folder."""


def item_fields(folder: Path) -> tuple[dict[str, Any], Skipped | None]:
    """The fields of the item in `folder`: its `item.json` over {"title": folder name}, and
    what was wrong with that file (None when it is absent or fine)."""
    fields: dict[str, Any] = {"title": folder.name}
    path = folder / ITEM_FILE
    if not path.is_file():
        return fields, None
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        return fields, Skipped(str(path), f"cannot read item fields: {exc}")
    except json.JSONDecodeError as exc:
        return fields, Skipped(str(path), f"invalid JSON: {exc.msg} at line {exc.lineno}")
    if not isinstance(obj, dict):
        return fields, Skipped(str(path), f"expected a JSON object, found {type(obj).__name__}")
    return {**fields, **manifest.item_fields(obj)}, None


def is_image_name(name: str) -> bool:
    """True for a visible file name with an image suffix (case-insensitive)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_under(folder: Path) -> tuple[list[str], list[Skipped]]:
    """Absolute paths of the images below `folder`, sorted by their path relative to it."""
    found: list[tuple[str, str]] = []
    errors: list[Skipped] = []

    def on_error(exc: OSError) -> None:
        errors.append(Skipped(str(exc.filename or folder), f"cannot list folder: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=False):
        # Prune hidden folders: os.walk honours the edit.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if is_image_name(name):
                path = os.path.join(dirpath, name)
                found.append((Path(os.path.relpath(path, folder)).as_posix(), path))
    return [path for _, path in sorted(found)], errors
