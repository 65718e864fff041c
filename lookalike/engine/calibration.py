"""Calibrate an index's match levels (`lookalike.engine.levels`) from its own photos and keep them in
its manifest (`lookalike.json`, key `calibration`), so every search can say "same product",
"similar" or "no close match".

Run at the end of every `lookalike index` run that changed the views, and after `lookalike tune`
(the tuned space has its own scale). Reads the views' vectors from the store (a seeded sample of
items beyond `MAX_PHOTOS` views); one-photo catalogues also embed perturbed copies of a sample of
photos as queries (`AUGMENTED`), a few seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.engine.levels import (
    MAX_PHOTOS,
    MIN_POSITIVES,
    Levels,
    choose_levels,
    held_out_scores,
    query_scores,
)
from lookalike.errors import LookalikeError
from lookalike.store.base import Condition, Filter, PointRecord, Store, where
from lookalike.types import Aggregation

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.engine.core import Engine
    from lookalike.learn.projection import Projection

Progress = Callable[[str, int, int], None]
MODES: tuple[Aggregation, ...] = ("centroid", "views")
EXACT_BELOW = 500
"""Up to this many views, any change of them recalibrates; above, a change of `DRIFT` in number."""
DRIFT = 0.1
AUGMENTED = 64
"""Photos perturbed and embedded as queries when too few items have a second photo."""


def augmented_view(image: Image.Image, rng: random.Random) -> Image.Image:
    """Another shot of the same thing, roughly: 70-90 % of the area at a random place, turned up
    to 8 degrees, 20 % lighter or darker, sometimes mirrored."""
    from PIL import ImageEnhance, ImageOps

    image = image.convert("RGB")
    w, h = image.size
    side = rng.uniform(0.7, 0.9) ** 0.5
    cw, ch = max(1, round(w * side)), max(1, round(h * side))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = image.crop((x, y, x + cw, y + ch)).rotate(rng.uniform(-8, 8), fillcolor=(255, 255, 255))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))


def calibration_levels(engine: Engine) -> dict[str, dict[str, Levels]]:
    """The index's levels by search space (`image`, `tuned`) and mode; empty when it has none
    (built before calibration, or too small: fewer than two items)."""
    record = engine.manifest.calibration if engine.manifest is not None else None
    out: dict[str, dict[str, Levels]] = {}
    for space, modes in ((record or {}).get("spaces") or {}).items():
        out[space] = {mode: Levels.from_record(raw) for mode, raw in modes.items()}
    return out


def views_signature(store: Store) -> tuple[str, int]:
    """(signature, count) of the index's views: sha256 over their sorted (id, content hash): what
    a projection and calibrated levels were made from, so that `stats` can tell when they are
    stale."""
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


def calibrate_index(
    engine: Engine, *, seed: int = 0, progress: Progress | None = None, force: bool = False
) -> None:
    """Compute the levels from the index's views and save them in its manifest (the caller holds
    the write lock). Skipped when they are current: same projection and, for indexes of up to
    `EXACT_BELOW` views, the very views they were computed on; above it, a number of views within
    `DRIFT` of theirs (levels move slowly with a large catalogue, and items added one at a time
    through the HTTP API must not cost a calibration each)."""
    manifest = engine.manifest
    if manifest is None:
        return
    count = engine.store.count(where("kind", "view"))
    projection = engine.stored_projection()
    projection_sha = projection.sha256 if projection is not None else None
    old = manifest.calibration or {}
    signature = views_signature(engine.store)[0] if count <= EXACT_BELOW else None
    if not force and old.get("projection") == projection_sha and "spaces" in old:
        if signature is not None and old.get("views") == signature:
            return
        before = int(old.get("view_count") or 0)
        if signature is None and before and abs(count - before) <= DRIFT * before:
            return
    notify = progress or (lambda stage, done, total: None)
    notify("calibrate", 0, 0)
    spaces = _calibrate(engine, projection, seed) if count else {}
    record = {
        "views": signature,
        "view_count": count,
        "projection": projection_sha,
        "spaces": spaces,
    }
    manifest = dataclasses.replace(manifest, calibration=record)
    manifest.save(engine.index_dir)
    engine.manifest = manifest


def _calibrate(engine: Engine, projection: Projection | None, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    store = engine.store
    by_item: dict[str, int] = {}
    for rec in store.scroll(where("kind", "view"), fields=["item_id"]):
        item = str(rec.payload["item_id"])
        by_item[item] = by_item.get(item, 0) + 1
    if len(by_item) < 2:
        return {}  # one item: nothing to tell it from
    chosen = sorted(by_item)
    if sum(by_item.values()) > MAX_PHOTOS:
        rng.shuffle(chosen)
        kept, total = [], 0
        for item in chosen:
            if total >= MAX_PHOTOS:
                break
            kept.append(item)
            total += by_item[item]
        chosen = sorted(kept)
    records: list[PointRecord] = []
    for start in range(0, len(chosen), 256):
        chunk = tuple(chosen[start : start + 256])
        flt = Filter((Condition("kind", "eq", "view"), Condition("item_id", "in", chunk)))
        records.extend(store.scroll(flt, with_vectors=True))
    records.sort(key=lambda r: r.id)  # deterministic
    items = [str(r.payload["item_id"]) for r in records]
    spaces = {"image": np.stack([np.asarray(r.vectors["image"]) for r in records])}
    if projection is not None:
        spaces["tuned"] = projection.apply(spaces["image"])
    augmented = _augmented_queries(engine, records, items, rng)
    out: dict[str, Any] = {}
    for space, vectors in spaces.items():
        out[space] = {}
        for mode in MODES:
            pos, neg = held_out_scores(vectors, items, mode)
            source = "held-out"
            if augmented is not None:
                queries, own = augmented
                if space == "tuned" and projection is not None:
                    queries = projection.apply(queries)
                qpos, qneg = query_scores(queries, own, vectors, items, mode)
                pos, neg = np.concatenate([pos, qpos]), np.concatenate([neg, qneg])
                source = "held-out+augmented" if len(pos) > len(qpos) else "augmented"
            if pos.size and neg.size:
                out[space][mode] = choose_levels(pos, neg, source=source).record()
    return out


def _augmented_queries(
    engine: Engine, records: list[PointRecord], items: list[str], rng: random.Random
) -> tuple[np.ndarray, list[str]] | None:
    """Perturbed catalogue photos embedded as queries, when too few photos have a sibling."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    if sum(n for n in counts.values() if n >= 2) >= MIN_POSITIVES:
        return None
    photos: dict[str, str] = {}
    for rec, item in zip(records, items, strict=True):
        photos.setdefault(item, str(rec.payload.get("image", "")))
    sample = sorted(photos)
    rng.shuffle(sample)
    vectors, own = [], []
    for item in sample[:AUGMENTED]:
        try:
            image = engine.decode_query(photos[item])
        except (LookalikeError, OSError):
            continue  # a photo gone since indexing: calibrate on the others
        view = engine.query_views(augmented_view(image, rng))[0]
        vectors.append(engine.query_vector(view.image))
        own.append(item)
    if not vectors:
        return None
    return np.stack(vectors), own


def describe(levels: Mapping[str, Mapping[str, Levels]], space: str = "image") -> str:
    """One line for `stats`: the levels of the search space searches use (`image`, `tuned`)."""
    if not levels.get(space):
        return "none (index again to calibrate)"
    parts = [
        f"{mode}: same product >= {lv.same:.3f}, no close match < {lv.floor:.3f} "
        f"({lv.precision:.0%} right on {lv.photos} {lv.source} photos)"
        for mode, lv in levels[space].items()
    ]
    return f"{space} space; " + "; ".join(parts)
