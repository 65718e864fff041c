"""Held-out draws of the catalogue for `tune --train` (never a query set), and the memory plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.learn.data import TrainData


@dataclass(frozen=True)
class Split:
    """Held-out draw: gallery views (point order) and queries (views or wild photos), by index into
    the training data, and what the held-out queries are."""

    train: tuple[int, ...]
    train_wild: tuple[int, ...]
    queries: tuple[int, ...]
    query_wild: tuple[int, ...]
    instance: bool
    """No item has two photos and there are no pairs: queries are augmented views of gallery
    photos (instance views)."""


def holdout_split(data: TrainData, holdout: float, seed: int) -> Split:
    """Hold out, seeded: `holdout` of the photos of each item that has several (a contiguous run
    in name order; at least one photo for `holdout` of those items when the share rounds to none;
    never an item's last photo); their views leave training and one view of each (the whole photo
    when indexed) queries the rest. And the pair photos of `holdout` of the paired items (they query all catalogue views).
    With neither, `holdout` of the views query as augmented copies (instance views)."""
    rng = np.random.default_rng(seed)
    photos: dict[str, dict[str, list[int]]] = {}
    for i, v in enumerate(data.views):
        photos.setdefault(v.item_id, {}).setdefault(v.photo, []).append(i)
    multi = sorted(item for item, p in photos.items() if len(p) >= 2)
    held_views: list[int] = []
    queries: list[int] = []
    lucky = set(rng.permutation(multi)[: max(1, round(len(multi) * holdout))].tolist())
    for item in multi:
        names = sorted(photos[item])
        k = min(len(names) - 1, int(len(names) * holdout)) or (1 if item in lucky else 0)
        # A contiguous run in name order (photos are named in shooting order: neighbours are
        # near-duplicates, so a scattered draw would test little but memory).
        first = int(rng.integers(0, len(names) - k + 1)) if k else 0
        for photo in names[first : first + k]:
            rows = photos[item][str(photo)]
            held_views.extend(rows)
            whole = [r for r in rows if not data.views[r].cutout]
            queries.append((whole or rows)[0])
    paired = sorted({w.item_id for w in data.wild})
    query_wild: list[int] = []
    if len(paired) >= 2:
        n = max(1, round(len(paired) * holdout))
        held_items = set(rng.permutation(paired)[:n].tolist())
        query_wild = [i for i, w in enumerate(data.wild) if w.item_id in held_items]
    instance = not queries and not query_wild
    if instance:
        n = max(1, round(len(data.views) * holdout))
        queries = sorted(rng.permutation(len(data.views))[:n].tolist())
    held = set(held_views)
    train = tuple(i for i in range(len(data.views)) if i not in held)
    qw = set(query_wild)
    train_wild = tuple(i for i in range(len(data.wild)) if i not in qw)
    return Split(train, train_wild, tuple(queries), tuple(query_wild), instance)


def estimate_bytes(views: int, size: int, act_elems: int, augmentations: int) -> int:
    """Memory a run holds: each view's 8-bit input and its cached float16 activations (clean +
    augmented), plus a fixed allowance for the network and the optimiser."""
    return views * (size * size * 3 + (augmentations + 1) * act_elems * 2) + 600 * 2**20


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
