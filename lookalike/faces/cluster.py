"""Faces -> people: Chinese whispers on the graph linking faces closer than a distance.

Chinese whispers (Biemann 2006, dlib's implementation) needs no number of clusters: each face
repeatedly takes the most common label among its linked neighbours. dlib seeds its random
generator the same way on every call, so the same faces in the same order give the same people.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from lookalike.faces.models import require_dlib

_BLOCK = 2048


def link_pairs(vectors: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of unit rows at Euclidean distance <= `threshold`.

    Computed in blocks of rows, so memory stays O(block x N) whatever N is.
    """
    v = np.asarray(vectors, dtype=np.float32)
    min_sim = 1.0 - threshold * threshold / 2.0
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(v), _BLOCK):
        sims = v[start : start + _BLOCK] @ v.T
        rows, cols = np.nonzero(sims >= min_sim - 1e-6)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                pairs.append((i, c))
    return pairs


def cluster_faces(vectors: np.ndarray, threshold: float) -> list[int]:
    """A person number per face (row of `vectors`): 1 is the person with most faces, then 2 ...

    Ties in size are ordered by the person's first face, so numbering is stable for a given input.
    """
    n = len(vectors)
    if n == 0:
        return []
    dlib: Any = require_dlib()
    # A self-loop per face: dlib sizes its label array from the edges, so isolated faces need one.
    edges = [(i, i) for i in range(n)] + link_pairs(vectors, threshold)
    raw = list(dlib.chinese_whispers(edges))
    sizes = Counter(raw)
    first: dict[int, int] = {}
    for i, label in enumerate(raw):
        first.setdefault(label, i)
    order = sorted(sizes, key=lambda label: (-sizes[label], first[label]))
    number = {label: k + 1 for k, label in enumerate(order)}
    return [number[label] for label in raw]
