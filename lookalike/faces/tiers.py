"""Two tiers of face matches: "you" (strict) and "maybe you" (looser), and when each applies.

A face search is a list a person looks through: missing one of their photos costs more than
showing a doubtful one, as long as the doubtful ones are shown as such. So matches come in two
tiers, by the distance between the query's descriptor and the photo's face (0..2):

    you        distance <= threshold (strict: a stranger almost never gets this close)
    maybe you  threshold < distance <= maybe_threshold, and only when the "you" tier is not empty

The "maybe you" tier is gated on the "you" tier: a strict match is the evidence that the person is
at the event at all; without it, the nearest faces are the people who look most like them, so a
person who is in none of the photos gets nothing rather than look-alikes. The distances behind
the defaults are in `lookalike.faces.settings` (chosen by `bench/faces_calibrate.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Tier = Literal["you", "maybe"]
TIERS: tuple[Tier, ...] = ("you", "maybe")


def split_tiers(
    distances: Sequence[float] | np.ndarray, threshold: float, maybe_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `distances` of the "you" and the "maybe you" matches, each nearest first.

    maybe_threshold <= threshold means no "maybe you" tier. Ties keep the given order.
    Example: distances [0.5, 0.3, 0.41], threshold 0.36, maybe 0.45 -> ([1], [2]);
    distances [0.40, 0.41] -> ([], []): nothing is strict, so nothing is shown.
    """
    d = np.asarray(distances, dtype=np.float64)
    order = np.argsort(d, kind="stable")
    you = order[d[order] <= threshold]
    if len(you) == 0 or maybe_threshold <= threshold:
        return you, order[:0]
    maybe = order[(d[order] > threshold) & (d[order] <= maybe_threshold)]
    return you, maybe


def tier_of(distance: float, threshold: float) -> Tier:
    """The tier of a match already known to be returned."""
    return "you" if distance <= threshold else "maybe"
