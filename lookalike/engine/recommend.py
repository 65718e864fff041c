""" "More like these, less like those": one query vector from positive and negative examples.

The idea of Qdrant's recommend API (`average_vector` strategy): the query is the mean of the
positive examples' vectors pushed away from the mean of the negative ones,
`mean(positive) - weight * mean(negative)`, normalised. With `weight` 0.5 this is Qdrant's
`avg_pos + (avg_pos - avg_neg)` up to scale, which is what a cosine search sees. The engine
searches with it like with any vector, leaving the examples themselves out of the results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.errors import QueryError
from lookalike.types import F32

NEGATIVE_WEIGHT = 0.5


def recommend_vector(
    positive: Sequence[F32], negative: Sequence[F32] = (), *, weight: float = NEGATIVE_WEIGHT
) -> F32:
    """The unit query vector for `positive` and `negative` example vectors (see the module
    docstring). QueryError without a positive example, for a negative `weight`, or when the
    examples cancel out (nothing left to search with)."""
    if not positive:
        raise QueryError("give at least one positive example (an item to find more like)")
    if weight < 0:
        raise QueryError("the weight of negative examples cannot be negative")
    query = np.mean(np.asarray(positive, dtype=np.float32), axis=0)
    if negative:
        query = query - weight * np.mean(np.asarray(negative, dtype=np.float32), axis=0)
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm < 1e-6:
        raise QueryError("the positive and negative examples cancel out: nothing to search for")
    return (query / norm).astype(np.float32)
