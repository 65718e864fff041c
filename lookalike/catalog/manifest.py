"""JSONL and CSV catalogue manifests, and catalogue items from JSON (see `item_id_of`).

JSONL, one item per line (blank lines ignored):

    {"id": "sku-1", "images": ["photos/a.jpg", "https://shop.example/b.jpg"], "title": "...", "price": 49}

`image` (one string) is accepted as well as `images` (a list, or one string). Relative paths resolve
against the manifest's folder to absolute paths; http(s) URLs are kept; other schemes (file:, data:,
ftp: ...) are refused image by image. Every other key becomes a field (JSON null values are dropped).

CSV, one image per row, header required (`,` `;` or tab separated, UTF-8):

    id,image,title,price
    sku-1,photos/a.jpg,Red dress,49.90
    sku-1,photos/b.jpg,,

Cells other than `id`/`image` become fields: empty cells are dropped, and a cell that is wholly a
number becomes an int or float (so `--where "price < 100"` compares numbers). Numbers with a leading
zero (`007`, zip codes, EANs) stay text, since converting them would lose the zeros.

Duplicate ids, in both formats: the item's images are the union of every line's images in order
(each image once), and for each field the first line that sets it wins; later lines only add
fields the item does not have yet.

A bad line or row (invalid JSON, not an object, no id, id neither string nor number, no images) is
recorded as `Skipped("<manifest>:<line number>", reason)` and the rest is still loaded.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lookalike.catalog import RESERVED_KEYS, RESERVED_PREFIX, Catalogue
from lookalike.errors import CatalogueError, QueryError
from lookalike.types import Item, Skipped

# Keys the loaders consume themselves; they never become fields.
_STRUCTURAL_KEYS = frozenset({"id", "image", "images"})

# Anything but letters, digits, `_` and `-` in a field name: `.` and `[]` are path syntax in the
# vector store's payload filters, and spaces or brackets cannot be written in a `--where` filter.
_UNSAFE_KEY_CHARS = re.compile(r"[^\w-]+")
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|[+-]?\.[0-9]+")


class BadLine(ValueError):
    """One line or row of a manifest is unusable; the message is the reason."""


def safe_key(name: object, taken: Collection[str] = ()) -> str | None:
    """A payload key for a catalogue field called `name`, or None when nothing usable is left.

    Runs of characters other than letters, digits, `_` and `-` become `_` (`"Price (EUR)"` ->
    `"Price_EUR"`); a name that is a reserved payload key (RESERVED_KEYS) or does not start with a
    letter or `_` gets the `field_` prefix (`"label"` -> `"field_label"`, `"2nd"` -> `"field_2nd"`);
    a name already in `taken` gets `_2`, `_3` ... appended.
    """
    key = _UNSAFE_KEY_CHARS.sub("_", str(name).strip()).strip("_")
    if not key:
        return None
    if key in RESERVED_KEYS or not (key[0].isalpha() or key[0] == "_"):
        key = RESERVED_PREFIX + key
    unique, n = key, 1
    while unique in taken:
        n += 1
        unique = f"{key}_{n}"
    return unique


def item_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The catalogue fields of an item object: every key but `id`, `images` and `image`, null
    values left out, names made safe (`safe_key`)."""
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        if name in _STRUCTURAL_KEYS or value is None:
            continue
        key = safe_key(name, fields)
        if key is not None:
            fields[key] = value
    return fields


# -- items from JSON: an item object shaped like a line of a JSONL manifest (as the HTTP API's
# `POST /api/items` takes it) -> its id and its image references (its fields: `item_fields`); then,
# once the references are local files (`api.item_writes` downloads URLs and keeps uploads), the
# `Item`.


def item_id_of(value: object) -> str:
    """The item id: a non-empty string (stripped), or an integer as its decimal string."""
    if isinstance(value, bool) or value is None:
        raise QueryError("item id must be a string or a number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise QueryError("item id must be a non-empty string or a number")


def image_refs(obj: Mapping[str, Any]) -> list[str]:
    """The item's image references, `images` then `image`, blanks left out. QueryError unless
    each is a string (an http(s) URL or a path; `api.item_writes` decides which it accepts)."""
    refs = [r for r in (*(obj.get("images") or []), obj.get("image")) if r]
    if not all(isinstance(r, str) for r in refs):
        raise QueryError("images must be strings (http(s) URLs or paths)")
    return refs


def catalogue_item(item_id: str, images: list[str], fields: dict[str, Any]) -> Item:
    """The `Item` to index: its images (local paths, each once, in order) and its fields."""
    return Item(item_id, tuple(dict.fromkeys(images)), fields)


def parse_number(text: str) -> int | float | str:
    """`text` stripped, as an int or a finite float when the whole value is one, else as a string."""
    value = text.strip()
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value) and any(c in value for c in ".eE"):
        number = float(value)
        return number if math.isfinite(number) else value
    return value


def resolve_image(ref: str, base: Path) -> str:
    """An image reference as an http(s) URL or an absolute, normalised local path.

    Relative paths are taken against `base` (the manifest's folder). Raises BadLine for an empty
    reference or a scheme other than http(s).
    """
    ref = ref.strip()
    if not ref:
        raise BadLine("empty image path")
    scheme = urlsplit(ref).scheme.lower()
    if scheme in ("http", "https"):
        return ref
    if len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise BadLine(f"image {ref!r}: only local paths and http(s) URLs are supported")
    return os.path.normpath(base / ref)  # `/` keeps an absolute `ref` as it is


@dataclass
class ItemCollector:
    """Builds items line by line, merging lines that share an id (see the module docstring)."""

    _images: dict[str, dict[str, None]] = field(default_factory=dict)  # (an ordered set)
    _fields: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, item_id: str, images: Iterable[str], fields: Mapping[str, Any]) -> None:
        self._images.setdefault(item_id, {}).update(dict.fromkeys(images))
        current = self._fields.setdefault(item_id, {})
        for key, value in fields.items():
            current.setdefault(key, value)

    def items(self) -> tuple[Item, ...]:
        return tuple(
            Item(item_id, tuple(images), dict(self._fields[item_id]))
            for item_id, images in self._images.items()
        )


def load_jsonl(path: Path) -> Catalogue:
    """Read a JSONL manifest (format in the module docstring). Raises CatalogueError if unreadable."""
    base = Path(os.path.abspath(path.parent))
    collector, skipped = ItemCollector(), []
    for lineno, raw in enumerate(_read_bytes(path).splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            if not text.strip():
                continue
            item_id, refs, fields = _parse_json_line(text)
        except UnicodeDecodeError:
            skipped.append(Skipped(where, "line is not valid UTF-8"))
            continue
        except BadLine as exc:
            skipped.append(Skipped(where, str(exc)))
            continue
        images: list[str] = []
        for ref in refs:  # a bad reference is recorded against the line and left out
            try:
                images.append(resolve_image(ref, base))
            except BadLine as exc:
                skipped.append(Skipped(where, str(exc)))
        if images:
            collector.add(item_id, images, fields)
        else:
            skipped.append(Skipped(where, f"item {item_id!r} has no usable images"))
    return Catalogue(collector.items(), tuple(skipped), str(path), base)


def _parse_json_line(text: str) -> tuple[str, list[str], dict[str, Any]]:
    """(item id, raw image references, safe fields) of one JSONL line; raises BadLine."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise BadLine(f"expected a JSON object, found {type(obj).__name__}")
    item_id = _item_id(obj.get("id"))
    refs = _as_refs(obj.get("images")) + _as_refs(obj.get("image"))
    if not refs:
        raise BadLine(f"item {item_id!r} has no images (give `images` or `image`)")
    return item_id, refs, item_fields(obj)


def _item_id(value: object) -> str:
    # bool is an int subclass, but `true` as an id is a mistake, not item "True".
    if isinstance(value, bool) or value is None:
        raise BadLine("missing id" if value is None else "id must be a string or a number")
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if isinstance(value, str):
        if value.strip():
            return value.strip()
        raise BadLine("empty id")
    raise BadLine(f"id must be a string or a number, found {type(value).__name__}")


def _as_refs(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadLine("`images` must be a list of strings and `image` a string")


def load_csv(path: Path) -> Catalogue:
    """Read a CSV manifest (format in the module docstring).

    Raises CatalogueError when the file cannot be read, is not UTF-8, or lacks an `id` or `image`
    column; bad rows are Skipped.
    """
    base = Path(os.path.abspath(path.parent))
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogueError(
            f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    # Comma by default; `;` or tab when the header uses that instead (spreadsheet exports).
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count) if any(c in first for c in ",;\t") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise CatalogueError(f"{path} is empty: a CSV catalogue needs a header `id,image,...`")
    id_col, image_col, field_cols = _columns(header, path)
    collector, skipped = ItemCollector(), []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        where = f"{path}:{reader.line_num}"
        try:
            item_id, ref, fields = _parse_row(row, len(header), id_col, image_col, field_cols)
            image = resolve_image(ref, base)
        except BadLine as exc:
            skipped.append(Skipped(where, str(exc)))
            continue
        collector.add(item_id, [image], fields)
    return Catalogue(collector.items(), tuple(skipped), str(path), base)


def _columns(header: list[str], path: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """(id column, image column, [(column, safe field key)]) from the header."""
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if "id" not in lowered or not ({"image", "images"} & set(lowered)):
        raise CatalogueError(
            f"{path}: a CSV catalogue needs an `id` and an `image` column, found {names}"
        )
    id_col = lowered.index("id")
    image_col = lowered.index("image") if "image" in lowered else lowered.index("images")
    field_cols: list[tuple[int, str]] = []
    taken: set[str] = set()
    for col, name in enumerate(names):
        if col in (id_col, image_col):
            continue
        key = safe_key(name, taken)
        if key is not None:
            taken.add(key)
            field_cols.append((col, key))
    return id_col, image_col, field_cols


def _parse_row(
    row: list[str], width: int, id_col: int, image_col: int, field_cols: list[tuple[int, str]]
) -> tuple[str, str, dict[str, Any]]:
    if any(cell.strip() for cell in row[width:]):
        raise BadLine(f"{len(row)} cells but the header has {width} columns")
    cells = row + [""] * (width - len(row))
    item_id, ref = cells[id_col].strip(), cells[image_col].strip()
    if not item_id:
        raise BadLine("missing id")
    if not ref:
        raise BadLine(f"item {item_id!r}: missing image")
    fields = {key: parse_number(cells[col]) for col, key in field_cols if cells[col].strip()}
    return item_id, ref, fields


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CatalogueError(f"catalogue not found: {path}") from None
    except OSError as exc:
        raise CatalogueError(f"cannot read catalogue {path}: {exc.strerror or exc}") from None
