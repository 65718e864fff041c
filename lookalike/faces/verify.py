"""Face verification metrics and threshold calibration: pure functions over distances.

A pair of faces is *accepted* as the same person when its distance is <= the threshold.
TPR = accepted same-person pairs / same-person pairs; FPR = accepted different-person pairs /
different-person pairs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def pair_distances(
    vectors: np.ndarray, labels: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every unordered pair i < j: (same-label pairs, different-label pairs).

    vectors: (N, D) L2-normalised rows; labels: N identities. Rows that are all NaN (no face
    found) are left out of every pair.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) != len(labels):
        raise ValueError(f"{len(v)} vectors but {len(labels)} labels")
    ok = np.asarray(~np.isnan(v).any(axis=1), dtype=bool)
    v = v[ok]
    lab = np.array([str(x) for x, keep in zip(labels, ok, strict=True) if keep])
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (v @ v.T)))
    i, j = np.triu_indices(len(v), k=1)
    same = lab[i] == lab[j]
    return d[i, j][same], d[i, j][~same]


def rates(positives: np.ndarray, negatives: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) when pairs at distance <= `threshold` are accepted."""
    pos, neg = np.asarray(positives), np.asarray(negatives)
    tpr = float(np.mean(pos <= threshold)) if len(pos) else 0.0
    fpr = float(np.mean(neg <= threshold)) if len(neg) else 0.0
    return tpr, fpr


def threshold_at_fpr(negatives: np.ndarray, fpr: float) -> float:
    """The largest threshold whose FPR on `negatives` is at most `fpr`.

    With n negatives at most floor(fpr * n) of them may be accepted; ties are never split, so
    the threshold stops just below the first negative that would exceed the budget.
    Example: negatives [0.2, 0.4, 0.4, 0.9], fpr 0.5 -> 2 allowed, but both 0.4s come together,
    so the threshold is just below 0.4 (FPR 0.25).
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    if len(neg) == 0:
        raise ValueError("threshold_at_fpr needs at least one different-person pair")
    allowed = int(np.floor(fpr * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float("inf")
    return float(np.nextafter(neg[allowed], -np.inf))


def tpr_at_fpr(positives: np.ndarray, negatives: np.ndarray, fpr: float) -> tuple[float, float]:
    """(TPR, threshold) at the largest threshold whose FPR is at most `fpr`."""
    t = threshold_at_fpr(negatives, fpr)
    return rates(positives, negatives, t)[0], t


def best_accuracy_threshold(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) maximising (TPR + 1 - FPR) / 2 over the observed distances."""
    pos, neg = np.asarray(positives), np.asarray(negatives)
    best = (0.0, -1.0)
    for t in np.unique(np.concatenate([pos, neg])):
        tpr, fpr = rates(pos, neg, float(t))
        acc = (tpr + 1.0 - fpr) / 2.0
        if acc > best[1]:
            best = (float(t), acc)
    return best


def search_average_precision(
    distances: Sequence[float] | np.ndarray, relevant: Sequence[bool] | np.ndarray, cut: float
) -> float:
    """Average precision of a search that returns the photos at distance <= `cut`, nearest first.

    distances / relevant: one entry per photo searched (inf for a photo with no face found).
    A relevant photo that is not returned counts as never found: AP = (sum over the relevant
    photos returned of the precision at their rank) / (number of relevant photos). 0 when there
    is no relevant photo. Ties keep the given order.
    Example: distances [0.2, 0.3, 0.5], relevant [True, False, True], cut 0.4 -> only the first
    two are returned; AP = (1/1) / 2 = 0.5; with cut 0.6, AP = (1/1 + 2/3) / 2 = 0.833.
    """
    d = np.asarray(distances, dtype=np.float64)
    rel = np.asarray(relevant, dtype=bool)
    if len(d) != len(rel):
        raise ValueError(f"{len(d)} distances but {len(rel)} relevance flags")
    total = int(rel.sum())
    if total == 0:
        return 0.0
    order = np.argsort(d, kind="stable")
    returned = order[d[order] <= cut]
    hits = rel[returned]
    if not hits.any():
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    precision = np.arange(1, len(ranks) + 1) / ranks
    return float(precision.sum() / total)
