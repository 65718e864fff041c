"""The signature of an index's views: what a projection and calibrated levels were made from,
so that `stats` can tell when they are stale."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from lookalike.store.base import Store, where


def views_signature(store: Store) -> tuple[str, int]:
    """(signature, count) of the index's views: sha256 over their sorted (id, content hash)."""
    rows = sorted(
        (rec.id, str(rec.payload.get("content_hash", "")))
        for rec in store.scroll(where("kind", "view"), fields=["content_hash"])
    )
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    return digest, len(rows)


def views_stale(store: Store, record: Mapping[str, Any], exact: bool) -> tuple[bool, int]:
    """(stale, current view count) of what `record` (a manifest entry with `views` and
    `view_count`) was made from. exact: compare every view's id and content hash (changed photos
    are caught too); else only the number of views (one count, for `stats`)."""
    if exact:
        signature, count = views_signature(store)
        return signature != record.get("views"), count
    count = store.count(where("kind", "view"))
    return count != record.get("view_count"), count


def stale_note(verb: str, made_from: int, now: int, command: str) -> str:
    """The `stats` line's warning that a projection or network no longer matches the index."""
    return f"; STALE: {verb} on {made_from} views, the index now has {now} (run `{command}` again)"
