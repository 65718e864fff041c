"""Catalogue items from JSON: an item object shaped like a line of a JSONL manifest (as the HTTP
API's `POST /api/items` takes it) -> its id and its image references (its fields:
`manifest.item_fields`); then, once the references are local files (`api.item_writes` downloads
URLs and keeps uploads), the `Item`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lookalike.errors import QueryError
from lookalike.types import Item


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
