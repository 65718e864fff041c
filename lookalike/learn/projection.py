"""Adapt the embedding space to one catalogue: a linear projection that separates its items.

A generic embedder (ImageNet features) spends much of its variance on what differs between photos
of the *same* item (light, hand, shelf, angle) and little on what tells sibling items apart (a
carton's print, an apple's shade). Learned whitening (Radenović et al., "Fine-tuning CNN image
retrieval with no human annotation", TPAMI 2018) fixes that cheaply, from the catalogue alone:

1. centre on the mean `m` of the fitted vectors;
2. whiten the *within-item* scatter `S_w` (how photos of one item differ), regularised towards the
   identity: `W = V diag(1 / sqrt(e + lam * mean(e)))` where `S_w = V diag(e) V^T`. Directions
   in which photos of one item vary a lot are shrunk, quiet directions are amplified; `lam`
   (relative to the mean eigenvalue, so it does not depend on the embedder's scale) keeps the
   amplification of directions the catalogue never saw vary from exploding;
3. keep the `dim` leading principal axes of the whitened data (its total scatter): directions that
   vary *between* items once within-item noise is unit-scaled.

`P = W U[:, :dim]`; a vector is mapped to `l2_normalise((x - m) @ P)`. `dim` and `lam` are chosen on
a held-out part of the catalogue's own photos (`holdout_split`: by photo within items, seeded),
never on query photos; the grid, the held-out figures and the choice are returned (`TuneResult`)
so they can be reported. The final projection is refitted on every photo with the chosen parameters.

The cross-domain variant (`fit_cross_domain`) takes pairs (photo in the wild, its item's product
shot) and whitens the scatter of their *differences* (uncentred, so the systematic domain shift is
whitened away too): worn photos land close to their product shots.

Pure numpy (float64 inside, float32 out); no I/O except `Projection.save` / `Projection.load`.

This module holds the value (`Projection`), the parameters and the results (`GridPoint`,
`TuneResult`) and the whitening (`Whitening`, steps 1-3); the fits and held-out ranking are in
`lookalike.learn.tuning`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lookalike.errors import CatalogueError, IndexMismatchError
from lookalike.pipeline.embed import l2_normalise
from lookalike.types import F32

VERSION = "whiten-pca/1"
"""Algorithm and file format of a `Projection`. Bump when either changes meaning."""

DEFAULT_DIMS: tuple[int, ...] = (64, 96, 128, 192, 256, 384, 512)
"""Output dimensions tried on the held-out photos (those above the input dimension are dropped)."""

DEFAULT_LAMBDAS: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0)
"""Regularisation tried, as multiples of the mean within-item eigenvalue (0 = full whitening)."""

DEFAULT_HOLDOUT = 0.2

DEFAULT_CROSS_SPLITS = 5
"""Held-out draws the cross-domain choice averages over (pairs are few: one draw is noisy)."""

DEFAULT_SPLITS = 5
"""Held-out draws the catalogue choice averages over: its grid is flat near the top and one draw's
argmax moved from lam 0.03 to 0.3 with the order of the same grocery photos (docs/parts/tune.md)."""

RANK_DEPTH = 100
"""Ranked-list length when scoring held-out photos: mAP is exact for catalogues of <= 100 items and
a close lower bound beyond (an item ranked past 100 counts 0)."""

MAX_HELD_OUT = 2000
"""Held-out photos scored per grid point at most (a seeded sample beyond): keeps tuning a large
catalogue to seconds per grid point."""

Criterion = Literal["views", "centroid", "both"]
Mode = Literal["views", "centroid"]
Progress = Callable[[str, int, int], None]

PAIRS_HINT = (
    "`lookalike tune --pairs photos.csv` learns from photos of indexed items taken elsewhere "
    "(CSV `image,item_id`: a shopper's or a worn photo and the item it shows)"
)


# ---------------------------------------------------------------------------------------------
# The projection (a value: stored with the index, applied to views and queries)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Projection:
    """A fitted linear map `x -> l2_normalise((x - mean) @ matrix)`.

    matrix: (D_in, D_out) float32; mean: (D_in,) float32. `version` names the algorithm and file
    format (`VERSION`), `params` how it was fitted (`method`, `dim`, `lam`), `fitted_on` what it
    was fitted on (counts of vectors and items, the held-out fraction and seed): JSON-able dicts.
    Equality is by content (`sha256`), so two fits of the same data compare equal.
    """

    matrix: F32
    mean: F32
    version: str = VERSION
    params: Mapping[str, Any] = field(default_factory=dict)
    fitted_on: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Own read-only float32 copies: the caller's arrays are neither kept nor frozen.
        matrix = np.array(self.matrix, dtype=np.float32, order="C", copy=True)
        mean = np.array(self.mean, dtype=np.float32, copy=True).reshape(-1)
        if matrix.ndim != 2 or matrix.shape[0] != mean.shape[0] or matrix.shape[1] < 1:
            raise ValueError(
                f"projection matrix must be (D_in, D_out) with D_in = len(mean): "
                f"got {matrix.shape} and mean {mean.shape}"
            )
        if not (np.isfinite(matrix).all() and np.isfinite(mean).all()):
            raise ValueError("projection matrix and mean must be finite")
        matrix.setflags(write=False)
        mean.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "fitted_on", dict(self.fitted_on))

    @property
    def d_in(self) -> int:
        """Dimension of the vectors it accepts (the embedder's)."""
        return int(self.matrix.shape[0])

    @property
    def d_out(self) -> int:
        """Dimension of the vectors it returns (the index's, once applied)."""
        return int(self.matrix.shape[1])

    @functools.cached_property
    def sha256(self) -> str:
        """sha256 over the shapes and float32 little-endian bytes of `matrix` then `mean`.

        Identifies the transform for the index manifest: vectors projected by different matrices
        are not comparable.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.d_in}x{self.d_out};".encode())
        digest.update(self.matrix.astype("<f4").tobytes())
        digest.update(self.mean.astype("<f4").tobytes())
        return digest.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Projection):
            return NotImplemented
        return self.version == other.version and self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash((self.version, self.sha256))

    def apply(self, x: np.ndarray) -> F32:
        """Project vectors: (N, D_in) -> (N, D_out), or one (D_in,) -> (D_out,); L2-normalised.

        Raises IndexMismatchError when the vectors have another dimension than the projection was
        fitted on (they come from another embedder).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1:] != (self.d_in,) or x.ndim not in (1, 2):
            raise IndexMismatchError(
                f"the projection takes {self.d_in}-d vectors, got an array of shape {x.shape}: "
                "it was fitted on another embedder's vectors; run `lookalike tune` again"
            )
        return l2_normalise((x - self.mean) @ self.matrix)

    def record(self) -> dict[str, Any]:
        """What the index manifest keeps: version, sha256, dimensions and params (JSON-able)."""
        return {
            "version": self.version,
            "sha256": self.sha256,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "params": dict(self.params),
        }

    def save(self, path: Path | str) -> Path:
        """Write `<path>.npz` (matrix, mean) and `<path>.json` (version, sha256, params, fitted_on).

        `path` may carry the `.npz` suffix or none. Each file is written to a temporary name and
        renamed, so neither is ever half written; a reader racing a save may pair the new matrix
        with the old json, which `load` refuses (sha256 mismatch) rather than use. Returns the npz
        path.
        """
        npz, meta = _paths(path)
        npz.parent.mkdir(parents=True, exist_ok=True)
        tmp = npz.with_name(npz.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, matrix=self.matrix, mean=self.mean)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(npz)
        record = {**self.record(), "fitted_on": dict(self.fitted_on)}
        tmp_meta = meta.with_name(meta.name + ".tmp")
        tmp_meta.write_text(json.dumps(record, indent=2, sort_keys=True, default=_json_default))
        tmp_meta.replace(meta)
        return npz

    @staticmethod
    def load(path: Path | str) -> Projection:
        """Read a projection written by `save` (`path` with or without `.npz`).

        Raises IndexMismatchError when a file is missing or unreadable, the version is not one this
        lookalike reads, or the matrix does not match the sha256 recorded beside it (a corrupt or
        swapped file must not silently change every search).
        """
        npz, meta = _paths(path)
        try:
            record = json.loads(meta.read_text())
            with np.load(npz, allow_pickle=False) as arrays:
                matrix, mean = arrays["matrix"], arrays["mean"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise IndexMismatchError(f"cannot read the projection at {npz}: {exc}") from exc
        if not isinstance(record, dict) or record.get("version") != VERSION:
            found = record.get("version") if isinstance(record, dict) else None
            raise IndexMismatchError(
                f"{meta} holds projection version {found!r}, this lookalike reads {VERSION!r}: "
                "run `lookalike tune` again"
            )
        try:
            projection = Projection(
                matrix,
                mean,
                VERSION,
                dict(record.get("params") or {}),
                dict(record.get("fitted_on") or {}),
            )
        except ValueError as exc:
            raise IndexMismatchError(f"{npz}: {exc}") from exc
        if projection.sha256 != record.get("sha256"):
            raise IndexMismatchError(
                f"{npz} does not match the sha256 recorded in {meta.name}: the file is corrupt or "
                "was replaced; run `lookalike tune` again"
            )
        return projection


def _paths(path: Path | str) -> tuple[Path, Path]:
    path = Path(path)
    npz = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    return npz, npz.with_suffix(".json")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------
# The whitening (steps 1-3 of the algorithm above)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Results of a fit
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridPoint:
    """Held-out figures of one candidate (`dim`, `lam`); `dim = 0` stands for no projection.

    `metrics` maps mode (`views`, `centroid`, or `cross` for cross-domain) -> the metric dict of
    `lookalike.evaluation.metrics.evaluate` (recall@1/3/10, map, queries). `score` is what the choice ranks by.
    """

    dim: int
    lam: float
    metrics: Mapping[str, Mapping[str, float]]
    score: float


@dataclass(frozen=True)
class TuneResult:
    """A fitted projection and how its parameters were chosen.

    projection: refitted on every vector with the chosen parameters.
    chosen: the grid point picked on the held-out photos; baseline: the same held-out photos
    scored without a projection. grid: every candidate, in the order tried. split: counts of
    fitted / held-out vectors and items, the fraction and the seed.
    """

    projection: Projection
    chosen: GridPoint
    baseline: GridPoint
    grid: tuple[GridPoint, ...]
    split: Mapping[str, Any]

    @property
    def improves(self) -> bool:
        """True when the chosen projection beat no projection on the held-out photos."""
        return self.chosen.score > self.baseline.score

    def table(self) -> str:
        """The grid as a markdown table (held-out R@1 and mAP per mode), chosen row in bold."""
        modes = list(self.baseline.metrics)
        head = "| dim | lambda | " + " | ".join(f"{m} R@1 | {m} mAP" for m in modes) + " |"
        rule = "|---|---|" + "---|---|" * len(modes)
        rows = [head, rule]
        for point in (self.baseline, *self.grid):
            cells = [
                "none" if point.dim == 0 else str(point.dim),
                "-" if point.dim == 0 else f"{point.lam:g}",
            ]
            for m in modes:
                cells += [f"{point.metrics[m]['recall@1']:.3f}", f"{point.metrics[m]['map']:.3f}"]
            if point is self.chosen:
                cells = [f"**{c}**" for c in cells]
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)
