"""Held-out measurement during training: centroid Recall@1 of a draw, and the guard that stops a
run whose draw falls.

The draw is the catalogue's own (`lookalike.learn.data.holdout_split`), never a query set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def centroid_recall(
    gallery: np.ndarray, g_items: Sequence[str], queries: np.ndarray, q_items: Sequence[str]
) -> tuple[float, float]:
    """(Recall@1, mean margin) of normalised query vectors against the normalised centroids of the
    gallery's items (the product's default mode). The margin (true item's cosine minus the best
    other's; a query whose item is not in the gallery counts -1) breaks ties, which are common on
    small held-out draws."""
    names = sorted(set(g_items))
    pos = {n: i for i, n in enumerate(names)}
    cent = np.zeros((len(names), gallery.shape[1]), np.float64)
    np.add.at(cent, np.array([pos[n] for n in g_items]), gallery)
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    sims = np.asarray(queries, np.float64) @ cent.T
    truth = np.array([pos.get(t, -1) for t in q_items])
    known = truth >= 0
    rows = np.arange(len(truth))
    hit = (sims.argmax(axis=1) == truth) & known
    own = np.where(known, sims[rows, np.maximum(truth, 0)], -1.0)
    others = sims.copy()
    others[rows[known], truth[known]] = -np.inf
    margin = own - others.max(axis=1) if sims.shape[1] > 1 else own
    return float(hit.mean()), float(margin.mean())


def guard_width(setting: float, base: float, n_queries: int) -> float:
    """How far held-out R@1 may fall below its best before training stops and restores the best.

    At least the setting, two held-out queries and two standard errors of the base recall on the
    draw: on a small draw (60 worn photos of 300 pairs) a fall of 0.05 is 3 queries, noise rather
    than a fall.
    """
    n = max(1, n_queries)
    return max(setting, 2.0 / n, 2.0 * float(np.sqrt(base * (1.0 - base) / n)))


def grace_epochs(planned: int) -> int:
    """Epochs the held-out fall guard waits before it judges: the first quarter of the schedule,
    at least three. Right after the warm-up the learning rate peaks and the draw dips before it
    climbs (garments fold 0: 0.30 -> 0.18 at epoch 2, back at epoch 4, above at 7; fold 1 fell
    0.33 -> 0.12 at epoch 2, the guard stopped it there and the one-epoch network came out below
    the projection alone)."""
    return max(3, math.ceil(planned / 4))


@dataclass(frozen=True)
class Guard:
    """Stop-and-restore rule of one run: a diverging loss at any epoch; a held-out fall wider
    than `width` below the best epoch once the grace epochs are over."""

    width: float
    grace: int

    def stops(self, epoch: int, loss: float, score: float, best: float) -> bool:
        if not math.isfinite(loss):
            return True
        return epoch > self.grace and score < best - self.width
