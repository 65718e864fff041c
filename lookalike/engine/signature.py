"""The signature of an index's views: what a projection and calibrated levels were made from,
so that `stats` can tell when they are stale."""

from __future__ import annotations

import hashlib

from lookalike.store.base import Store, where


def views_signature(store: Store) -> tuple[str, int]:
    """(signature, count) of the index's views: sha256 over their sorted (id, content hash)."""
    rows = sorted(
        (rec.id, str(rec.payload.get("content_hash", "")))
        for rec in store.scroll(where("kind", "view"), fields=["content_hash"])
    )
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    return digest, len(rows)
