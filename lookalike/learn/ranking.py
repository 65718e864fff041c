"""Item-level ranking of held-out photos (scored with lookalike.evaluation.metrics's metrics)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.learn.projection import RANK_DEPTH, Mode
from lookalike.pipeline.embed import l2_normalise


def item_rankings(
    gallery: np.ndarray,
    gallery_items: Sequence[str] | np.ndarray,
    queries: np.ndarray,
    *,
    mode: Mode,
    depth: int = RANK_DEPTH,
) -> list[list[str]]:
    """Each query's item ids, best first (at most `depth`), by cosine similarity.

    gallery: (G, D) view vectors, L2-normalised (already projected when comparing projected
    spaces); gallery_items: (G,) their item ids; queries: (Q, D) L2-normalised. mode `views` ranks
    items by their best view; `centroid` by the re-normalised mean of their views, which is the
    engine's centroid point when the views are stored projected. Ties break by item id order.
    """
    g = np.asarray(gallery, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    names, inverse = np.unique(np.asarray([str(i) for i in gallery_items]), return_inverse=True)
    depth = min(depth, len(names))
    out: list[list[str]] = []
    if mode == "centroid":
        sums = np.zeros((len(names), g.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, g)
        centroids = l2_normalise(sums)
    elif mode != "views":
        raise ValueError(f"mode must be views or centroid, got {mode!r}")
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(names)))
    for chunk in range(0, len(q), 256):  # bounded memory: 256 x G similarities at a time
        block = q[chunk : chunk + 256]
        if mode == "centroid":
            scores = block @ centroids.T
        else:
            scores = np.maximum.reduceat((block @ g.T)[:, order], starts, axis=1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        out.extend([names[row].tolist() for row in top])
    return out
