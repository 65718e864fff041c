"""Centroids: each item's `centroid` point, the normalised mean of its current views, with the
item's consensus attributes and the words text queries match."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.engine.records import NOT_DETECTED

if TYPE_CHECKING:
    from lookalike.learn.projection import Projection
from lookalike.pipeline.embed import l2_normalise
from lookalike.store.base import Condition, Filter, PointRecord, Store, point_id, where


def consensus(lists: Sequence[Sequence[str]], *, top: int = 3) -> list[str]:
    """Values found in at least a third of an item's views, most frequent first (at least one)."""
    counts: dict[str, int] = {}
    for values in lists:
        for v in dict.fromkeys(values):
            counts[v] = counts.get(v, 0) + 1
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    kept = [v for v in ranked if counts[v] * 3 >= len(lists)]
    return (kept or ranked[:1])[:top]


def refresh_centroids(
    store: Store, projection_of: Callable[[], Projection | None], text_fields: Sequence[str]
) -> None:
    """Make every item's `centroid` point the normalised mean of its current views.

    Computed from what is in the store (not from this run's work), so it also repairs centroids
    left stale by a run that was killed before reaching this step.
    """
    views: dict[str, list[tuple[str, str, str]]] = {}
    for rec in store.scroll(
        where("kind", "view"), fields=["item_id", "content_hash", "fields_hash"]
    ):
        p = rec.payload
        # The fields hash is part of the signature: changed metadata rebuilds the search text.
        views.setdefault(p["item_id"], []).append(
            (rec.id, p["content_hash"], p.get("fields_hash", ""))
        )
    signatures = {
        item_id: hashlib.sha256(repr(sorted(v)).encode()).hexdigest()[:16]
        for item_id, v in views.items()
    }
    current: dict[str, str] = {}
    orphans: list[str] = []
    for rec in store.scroll(where("kind", "centroid"), fields=["item_id", "views"]):
        item_id = rec.payload["item_id"]
        if item_id in views:
            current[item_id] = rec.payload.get("views", "")
        else:
            orphans.append(rec.id)
    store.delete(orphans)
    todo = [i for i, sig in signatures.items() if current.get(i) != sig]
    for start in range(0, len(todo), 256):
        chunk = todo[start : start + 256]
        recs = list(
            store.scroll(
                Filter((Condition("item_id", "in", tuple(chunk)), Condition("kind", "eq", "view"))),
                with_vectors=True,
            )
        )
        by_item: dict[str, list[PointRecord]] = {}
        for rec in recs:
            by_item.setdefault(rec.payload["item_id"], []).append(rec)
        points = []
        for item_id, recs_ in by_item.items():
            recs_.sort(key=lambda r: r.id)  # deterministic summation order
            mean = np.mean([r.vectors["image"] for r in recs_], axis=0)
            vectors = {"image": l2_normalise(mean[None])[0]}
            projection = projection_of()
            if projection is not None:
                # Recomputed in the projected space: the mean of the projected views.
                tuned = [
                    r.vectors["tuned"]
                    if "tuned" in r.vectors
                    else projection.apply(r.vectors["image"])
                    for r in recs_
                ]
                vectors["tuned"] = l2_normalise(np.mean(tuned, axis=0)[None])[0]
            first = min(recs_, key=lambda r: r.payload["image"])
            payload = {
                k: v
                for k, v in first.payload.items()
                if k not in ("box", "label", "det_score", "content_hash", "view_key", "pending")
            }
            payload.update(
                kind="centroid",
                views=signatures[item_id],
                colours=consensus([r.payload.get("colours") or [] for r in recs_]),
                classes=consensus([r.payload.get("classes") or [] for r in recs_]),
                # Detected objects ("cup", "handbag"); the whole-photo and user-box views
                # carry no detector label.
                labels=consensus(
                    [
                        [r.payload["label"]]
                        for r in recs_
                        if r.payload.get("label") not in NOT_DETECTED
                    ]
                ),
            )
            payload["search_text"] = search_text(payload, text_fields)
            points.append(
                PointRecord(
                    point_id(item_id, "centroid"),
                    vectors,
                    payload,
                )
            )
        store.upsert(points)


def search_text(payload: Mapping[str, Any], text_fields: Sequence[str]) -> str:
    """The words text queries match for an item: its catalogue text fields and attributes."""
    parts: list[str] = []
    for name in (*text_fields, "colours", "classes", "labels"):
        value = payload.get(name)
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
        elif value not in (None, ""):
            parts.append(str(value))
    return " ".join(parts)
