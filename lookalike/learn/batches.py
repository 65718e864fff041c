"""Batches and learning-rate schedule of `tune --train` (research recipe v1: P items x 2 views,
one-epoch warm-up, cosine decay)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def schedule(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    span = max(1, total - warmup)
    return 0.5 * (1.0 + float(np.cos(np.pi * min(1.0, (step - warmup) / span))))


class PairBatches:
    """Batches of P items x 2 cached copies: two different views of the item when it has them,
    else two different copies of its one view (the self-supervised instance pair). Copies of
    training view j sit at rows j*A .. j*A+A-1 of the cache."""

    def __init__(
        self, view_items: Sequence[int], copies: int, batch: int, rng: np.random.Generator
    ) -> None:
        self.by_item: dict[int, list[int]] = {}
        for j, item in enumerate(view_items):
            self.by_item.setdefault(item, []).append(j)
        self.items = np.array(sorted(self.by_item))
        self.copies = copies
        self.per_batch = max(1, min(batch // 2, len(self.items)))
        self.rng = rng
        self.steps_per_epoch = max(1, -(-len(view_items) // (2 * self.per_batch)))

    def draw(self) -> np.ndarray:
        rng, a = self.rng, self.copies
        rows: list[int] = []
        for item in rng.choice(self.items, size=self.per_batch, replace=False):
            views = self.by_item[int(item)]
            if len(views) >= 2:
                v1, v2 = rng.choice(views, size=2, replace=False)
                rows += [int(v1) * a + int(rng.integers(a)), int(v2) * a + int(rng.integers(a))]
            else:
                c1, c2 = rng.choice(a, size=2, replace=a < 2)
                rows += [views[0] * a + int(c1), views[0] * a + int(c2)]
        return np.asarray(rows, dtype=np.int64)
