"""Learned whitening (`lookalike.learn.projection`'s algorithm, steps 1-3): the within-item
scatter and its regularised whitening followed by the whitened data's principal axes.
"""

from __future__ import annotations

import numpy as np

from lookalike.errors import CatalogueError
from lookalike.learn.projection import PAIRS_HINT


class Whitening:
    """The lam-independent part of a fit: mean, eigen-decomposition of the within-item scatter,
    and the total scatter; `axes(lam)` finishes it for one regularisation."""

    def __init__(self, vectors: np.ndarray, within: np.ndarray) -> None:
        x = np.asarray(vectors, dtype=np.float64)
        self.mean = x.mean(axis=0)
        centred = x - self.mean
        self.total = centred.T @ centred / len(x)
        values, self.vectors = np.linalg.eigh(within)
        self.values = np.clip(values, 0.0, None)  # round-off makes null directions slightly < 0
        self.scale = float(self.values.mean())
        if not self.scale > 0.0:
            raise CatalogueError(
                "the photos of each item are identical: nothing to learn about how they vary"
            )

    def axes(self, lam: float) -> np.ndarray:
        """(D, D) projection: whitening then the whitened data's principal axes, leading first."""
        whiten = self.vectors / np.sqrt(self.values + lam * self.scale)
        # The smallest eigenvalues with lam = 0 are round-off: guard against dividing by ~0.
        whiten = np.where(np.isfinite(whiten), whiten, 0.0)
        cov = whiten.T @ self.total @ whiten
        _, axes = np.linalg.eigh((cov + cov.T) / 2)
        return _fix_signs(whiten @ axes[:, ::-1])


def _fix_signs(matrix: np.ndarray) -> np.ndarray:
    # Eigenvectors are defined up to sign; fix it (largest entry positive) so one fit always
    # produces the same bytes, hence the same sha256 in the index manifest.
    rows = np.abs(matrix).argmax(axis=0)
    signs = np.sign(matrix[rows, np.arange(matrix.shape[1])])
    signs[signs == 0] = 1.0
    return matrix * signs


def within_scatter(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(D, D) scatter of photos around their item's mean, over items with >= 2 photos."""
    x = np.asarray(x, dtype=np.float64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse, x)
    residual = x - (sums / counts[:, None])[inverse]
    keep = counts[inverse] >= 2
    if not keep.any():
        raise CatalogueError(f"no item has two photos to learn from; {PAIRS_HINT}")
    residual = residual[keep]
    return residual.T @ residual / len(residual)
