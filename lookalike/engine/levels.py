"""Match levels: when a hit is the same product, only a similar one, or no close match at all.

A cosine similarity means different things in different catalogues (two milk cartons of one brand
score higher than two photos of one T-shirt), so each index calibrates its own levels from its own
photos, for each search space (`image`, `tuned`) and aggregation mode (`centroid`, `views`):

- positives: how similar a catalogue photo is to its own item when that photo is left out
  (leave-one-out: the mean of the item's other photos for `centroid`, its best other photo for
  `views`). Items with one photo have no other photo: when fewer than `MIN_POSITIVES` photos have
  a sibling, each photo of a sample is perturbed (crop, turn, light; `augmented_view`), embedded as
  a query and compared to its own item, which still holds the original photo: an optimistic
  stand-in for a second photo.
- negatives: how similar the same photo is to the best *other* item (the nearest wrong answer).

`same`: the lowest score at which at least `PRECISION` of the (positive, negative) scores above it
are positives: above it a hit is "same product". `floor`: the `FLOOR_QUANTILE` quantile of the
negatives: almost every catalogue photo finds a wrong item at least this similar, so a query whose
best hit is below it is further from the whole catalogue than the catalogue's products are from
one another: "no close match". Between the two: "similar".

Pure numpy on vectors; `lookalike.engine.calibration` reads them from an index and stores the levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from lookalike.pipeline.embed import l2_normalise

PRECISION = 0.9
"""Share of "same product" calls that must be right on the calibration photos."""
FLOOR_QUANTILE = 0.05
MIN_POSITIVES = 30
"""Fewer held-out photos with a sibling than this: add augmented views (one-photo catalogues)."""
MAX_PHOTOS = 5000
"""Calibration photos drawn at most (seeded), so large indexes calibrate in seconds."""

Match = Literal["same product", "similar", "no close match"]
MATCHES: tuple[Match, ...] = ("same product", "similar", "no close match")


@dataclass(frozen=True)
class Levels:
    """Calibrated levels of one search space and mode. `same` >= `floor`, both cosine similarities.

    precision / recall: of "same product" calls at `same`, on the calibration photos (how often a
    photo's own item scores above `same`). photos: calibration photos; source: `held-out` (other
    photos of the item) or `augmented` (perturbed copies, one-photo items), or both joined by `+`.
    """

    same: float
    floor: float
    precision: float
    recall: float
    photos: int
    source: str

    def match(self, score: float) -> Match:
        if score >= self.same:
            return "same product"
        return "similar" if score >= self.floor else "no close match"

    def record(self) -> dict[str, Any]:
        return asdict(self)  # unrounded: a score equal to a level keeps its label

    @staticmethod
    def from_record(raw: Mapping[str, Any]) -> Levels:
        return Levels(**{k: raw[k] for k in Levels.__dataclass_fields__})


def choose_levels(
    positives: Sequence[float] | np.ndarray,
    negatives: Sequence[float] | np.ndarray,
    *,
    source: str,
    precision: float = PRECISION,
    floor_quantile: float = FLOOR_QUANTILE,
) -> Levels:
    """Levels from the scores of photos against their own item (positives) and against the best
    other item (negatives). With no positive scoring above every negative at `precision`, `same`
    is above every score seen: nothing is called "same product"."""
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("calibration needs positive and negative scores")
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    hits = np.cumsum(labels)
    prec = hits / np.arange(1, scores.size + 1)
    # Ties: a threshold admits every score equal to it, so judge only at the last of equal scores.
    last_of_tie = np.append(scores[1:] != scores[:-1], True)
    ok = np.flatnonzero((prec >= precision) & last_of_tie & (labels == 1))
    if ok.size:
        at = int(ok[-1])
        same = float(scores[at])
        got_precision = float(prec[at])
        recall = float(hits[at] / pos.size)
    else:
        same = float(np.nextafter(scores[0], np.inf))
        got_precision, recall = 1.0, 0.0
    floor = min(float(np.quantile(neg, floor_quantile)), same)
    return Levels(same, floor, got_precision, recall, int(pos.size), source)


def held_out_scores(
    vectors: np.ndarray, items: Sequence[str], mode: Literal["centroid", "views"]
) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) of every view whose item has another view.

    vectors: (N, D) L2-normalised views; items: the item of each. centroid: a view against the
    normalised mean of its item's other views (positive) and every other item's mean (negatives,
    best kept); views: against its item's best other view and the best view of another item.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    names, inverse = np.unique(np.asarray(items, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names))
    rows = np.flatnonzero(counts[inverse] >= 2)
    if rows.size == 0:
        return np.zeros(0), np.zeros(0)
    pos = np.empty(rows.size)
    neg = np.empty(rows.size)
    if mode == "centroid":
        sums = _item_sums(vectors, inverse, len(names))
        centroids = l2_normalise(sums.astype(np.float32))
        for start in range(0, rows.size, 512):
            chunk = rows[start : start + 512]
            v, own = vectors[chunk], inverse[chunk]
            rest = l2_normalise((sums[own] - v).astype(np.float32))
            pos[start : start + chunk.size] = np.sum(v * rest, axis=1)
            sims = v @ centroids.T
            sims[np.arange(chunk.size), own] = -np.inf
            neg[start : start + chunk.size] = sims.max(axis=1)
    else:
        for start in range(0, rows.size, 512):
            chunk = rows[start : start + 512]
            sims = vectors[chunk] @ vectors.T
            sims[np.arange(chunk.size), chunk] = -np.inf  # the photo itself
            same_item = inverse[None, :] == inverse[chunk][:, None]
            pos[start : start + chunk.size] = np.where(same_item, sims, -np.inf).max(axis=1)
            neg[start : start + chunk.size] = np.where(same_item, -np.inf, sims).max(axis=1)
    if len(names) < 2:
        return pos, np.zeros(0)
    return pos, neg


def query_scores(
    queries: np.ndarray,
    own: Sequence[str],
    vectors: np.ndarray,
    items: Sequence[str],
    mode: Literal["centroid", "views"],
) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) of query vectors (e.g. augmented views of catalogue photos) against
    the indexed views: the similarity to their own item (`own`) and to the best other item."""
    vectors = np.asarray(vectors, dtype=np.float32)
    names, inverse = np.unique(np.asarray(items, dtype=object).astype(str), return_inverse=True)
    where_item = {name: i for i, name in enumerate(names)}
    mine = np.array([where_item[str(o)] for o in own])
    if mode == "centroid":
        sums = _item_sums(vectors, inverse, len(names))
        sims = np.asarray(queries, dtype=np.float32) @ l2_normalise(sums.astype(np.float32)).T
    else:
        per_view = np.asarray(queries, dtype=np.float32) @ vectors.T
        sims = np.full((len(mine), len(names)), -np.inf, dtype=np.float32)
        for item in range(len(names)):
            cols = inverse == item
            sims[:, item] = per_view[:, cols].max(axis=1)
    pos = sims[np.arange(len(mine)), mine].astype(np.float64)
    sims[np.arange(len(mine)), mine] = -np.inf
    neg = sims.max(axis=1).astype(np.float64) if len(names) > 1 else np.zeros(0)
    return pos, neg


def _item_sums(vectors: np.ndarray, inverse: np.ndarray, items: int) -> np.ndarray:
    """(items, D) float64 sums of each item's rows; every item has a row (`np.unique` ids).
    Sorted segment sums: `np.add.at` takes a second on 2,700 rows of 1,280-d."""
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(items))
    return np.add.reduceat(vectors[order].astype(np.float64), starts, axis=0)
