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
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
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


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


FIT, QUERY, REFERENCE = 0, 1, 2
"""Roles of a photo while parameters are chosen (`holdout_split`): fitted (and searched among);
held out and searched for; held out and searched among without being fitted."""


def holdout_split(items: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """The role (FIT, QUERY or REFERENCE) of each photo while choosing parameters; (N,) int8.

    By photo within items: an item with n >= 3 photos gives `round(fraction * n)` of them as
    queries (at least 1), keeping at least two fitted photos, since one photo says nothing about
    how an item's photos vary. Items with one or two photos stay fitted.

    When that holds nothing out (no item has three photos, e.g. front and back shots only), whole
    items are held out instead: `round(fraction * m)` of the m items with two or more photos (at
    least 1, fewer than m), one photo of each as REFERENCE and the others as QUERY. Those items
    are then new to the projection, which is the harder test.

    Seeded; independent of the order in which items appear. fraction 0 fits everything.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {fraction}")
    labels = np.asarray([str(i) for i in items])
    roles = np.full(len(labels), FIT, dtype=np.int8)
    if fraction == 0.0:
        return roles
    rng = np.random.default_rng(seed)
    groups = {item: np.flatnonzero(labels == item) for item in sorted(set(labels.tolist()))}
    for rows in groups.values():
        if len(rows) >= 3:
            k = min(max(round(fraction * len(rows)), 1), len(rows) - 2)
            roles[rng.choice(rows, size=k, replace=False)] = QUERY
    if (roles == QUERY).any():
        return roles
    several = [item for item, rows in groups.items() if len(rows) >= 2]
    if len(several) < 2:
        return roles
    k = min(max(round(fraction * len(several)), 1), len(several) - 1)
    for item in rng.choice(np.array(several), size=k, replace=False).tolist():
        rows = rng.permutation(groups[item])
        roles[rows[0]] = REFERENCE
        roles[rows[1:]] = QUERY
    return roles


def fit_projection(
    vectors: np.ndarray,
    items: Sequence[str],
    *,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    dims: Sequence[int] = DEFAULT_DIMS,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    criterion: Criterion = "both",
    splits: int = DEFAULT_SPLITS,
    progress: Progress | None = None,
) -> TuneResult:
    """Learn a projection that separates the catalogue's items, from their photos alone.

    vectors: (N, D) catalogue view vectors (L2-normalised embeddings); items: (N,) the item id of
    each row. Nothing else is used: no query photo, no label beyond the grouping.

    A fraction `holdout` of the photos is set aside (`holdout_split`, seeded: by photo within
    items, or whole items when no item has three photos); every (dim, lam) in the grid is fitted
    on the rest and scored by retrieving the held-out photos' items among the other photos, with
    views (best view per item) and centroid (mean of the projected views, re-normalised)
    aggregation. This is repeated for `splits` draws (seeds `seed`, `seed + 1`, ...); the choice
    maximises held-out Recall@1 averaged over the draws (of the `criterion` mode, or the mean of
    both), then mAP, then prefers the smaller dim and the larger lam (the simpler map) on ties.
    Reported metrics are those means (`queries` summed); `split` describes the first draw.
    The returned projection is refitted on all N vectors with the chosen parameters.

    holdout = 0 skips the choice: the grid must then hold exactly one (dim, lam).
    progress(stage, done, total) is called with stage "tune" per grid point and draw, and "refit"
    at the end.
    Raises CatalogueError when too few items have several photos (nothing says how an item's
    photos vary, or nothing can be held out), ValueError for malformed arguments.
    """
    if criterion not in ("views", "centroid", "both"):
        raise ValueError(f"criterion must be views, centroid or both, got {criterion!r}")
    x, labels = _check_inputs(vectors, items)
    grid = _grid(dims, lambdas, x.shape[1])
    notify = progress or (lambda stage, done, total: None)
    modes: tuple[Mode, ...] = ("views", "centroid") if criterion == "both" else (criterion,)
    roles = holdout_split(labels, holdout, seed)
    fitted_on = {
        "vectors": len(x),
        "items": len(set(labels.tolist())),
        "holdout": holdout,
        "seed": seed,
        "criterion": criterion,
    }

    if holdout == 0.0:
        if len(grid) != 1:
            raise ValueError("holdout=0 fits fixed parameters: give exactly one dim and one lambda")
        notify("refit", 0, 1)
        projection = _refit(x, labels, grid[0], "within-item", fitted_on)
        notify("refit", 1, 1)
        point = GridPoint(grid[0][0], grid[0][1], {}, float("nan"))
        return TuneResult(projection, point, GridPoint(0, 0.0, {}, float("nan")), (point,), {})

    queries = roles == QUERY
    if not queries.any():
        raise CatalogueError(
            "too few items with two photos or more: tuning needs items photographed more than "
            "once, to learn how photos of one item differ and to hold some out. With one photo "
            f"per item, {PAIRS_HINT}"
        )
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    fitted = roles == FIT

    def scored_draw(
        draw_roles: np.ndarray, draw_seed: int, done: int
    ) -> tuple[dict[str, dict[str, float]], dict[tuple[int, float], dict[str, dict[str, float]]]]:
        """The baseline and every grid point scored on one draw's held-out photos."""
        fit_mask, gallery, held = draw_roles == FIT, draw_roles != QUERY, draw_roles == QUERY
        gal_x, gal_y = x[gallery], labels[gallery]
        ho_x, ho_y = _sample(x[held], labels[held], draw_seed)

        def score(proj: Projection | None) -> dict[str, dict[str, float]]:
            def f(v: np.ndarray) -> np.ndarray:
                return proj.apply(v) if proj is not None else l2_normalise(v)

            g, q = f(gal_x), f(ho_x)
            return {m: _evaluate(g, gal_y, q, ho_y, mode=m) for m in ("views", "centroid")}

        fit = _Whitening(x[fit_mask], _within_scatter(x[fit_mask], labels[fit_mask]))
        runs: dict[tuple[int, float], dict[str, dict[str, float]]] = {}
        for lam, dims_for_lam in _by_lambda(grid):
            axes = fit.axes(lam)
            for dim in dims_for_lam:
                runs[dim, lam] = score(Projection(axes[:, :dim], fit.mean))
                notify("tune", done + len(runs), splits * len(grid))
        return score(None), runs

    # Each grid point is scored on every draw (fitted without that draw's held-out photos) and
    # ranked by the mean: one draw of 20 % of the grocery photos is a noisy judge of a flat grid.
    baselines: list[dict[str, dict[str, float]]] = []
    per_point: dict[tuple[int, float], list[dict[str, dict[str, float]]]] = {}
    for n in range(splits):
        draw_roles = roles if n == 0 else holdout_split(labels, holdout, seed + n)
        base, runs = scored_draw(draw_roles, seed + n, n * len(grid))
        baselines.append(base)
        for key, metrics in runs.items():
            per_point.setdefault(key, []).append(metrics)
    baseline = _mean_point(0, 0.0, baselines, modes)
    points = [_mean_point(dim, lam, per_point[dim, lam], modes) for dim, lam in grid]
    chosen = _choose(points, modes)
    unseen = set(labels[roles == REFERENCE].tolist())
    split = {
        "by": "item" if unseen else "photo",
        "fraction": holdout,
        "seed": seed,
        "splits": splits,
        "fit_vectors": int(fitted.sum()),
        "held_out_vectors": int(queries.sum()),
        "held_out_scored": int(baselines[0]["views"]["queries"]),
        "reference_vectors": int((roles == REFERENCE).sum()),
        "items": fitted_on["items"],
        "held_out_items": len(set(labels[queries].tolist())),
        "unseen_items": len(unseen),
    }
    notify("refit", 0, 1)
    projection = _refit(x, labels, (chosen.dim, chosen.lam), "within-item", fitted_on)
    notify("refit", 1, 1)
    return TuneResult(projection, chosen, baseline, tuple(points), split)


def fit_grid(
    vectors: np.ndarray,
    items: Sequence[str],
    *,
    dims: Sequence[int] = DEFAULT_DIMS,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
) -> dict[tuple[int, float], Projection]:
    """Every (dim, lam) of the grid fitted on all the vectors, without any choice.

    For ablations and hindsight tables: one whitening per lam instead of one fit per grid point.
    Same contract for `vectors` and `items` as `fit_projection`.
    """
    x, labels = _check_inputs(vectors, items)
    whitening = _Whitening(x, _within_scatter(x, labels))
    out: dict[tuple[int, float], Projection] = {}
    for lam, dims_for_lam in _by_lambda(_grid(dims, lambdas, x.shape[1])):
        axes = whitening.axes(lam)
        for dim in dims_for_lam:
            info = {"method": "within-item", "dim": dim, "lam": lam}
            out[dim, lam] = Projection(
                axes[:, :dim], whitening.mean, VERSION, info, {"vectors": len(x)}
            )
    return out


def fit_cross_domain(
    wild: np.ndarray,
    product: np.ndarray,
    *,
    groups: Sequence[str] | None = None,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    dims: Sequence[int] = DEFAULT_DIMS,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    splits: int = DEFAULT_CROSS_SPLITS,
    progress: Progress | None = None,
) -> TuneResult:
    """Learn a projection that brings photos in the wild close to their items' product shots.

    wild, product: (N, D) vectors; row i of `wild` shows the item of row i of `product` (a worn
    photo and its garment's catalogue shot). groups: (N,) item id of each pair (default: each pair
    its own item); pairs of one item are held out together, so no held-out item is seen in fitting.

    The within-item scatter is the uncentred scatter of the differences `wild - product` (the
    domain shift is part of what gets whitened); the principal axes come from all 2N vectors.
    Parameters are chosen on held-out items (a fraction `holdout` of them, drawn `splits` times,
    seeded): their wild photos search among their own product shots, scored by Recall@1 (then mAP,
    then simplicity) averaged over the splits. The result's metrics are under the mode `cross`
    (means over the splits). holdout = 0 fits one fixed (dim, lam).
    Raises CatalogueError with fewer than 2 items to split, ValueError for malformed arguments.
    """
    w = _as_matrix(wild, "wild")
    p = _as_matrix(product, "product")
    if w.shape != p.shape:
        raise ValueError(f"wild and product must be paired row by row: {w.shape} != {p.shape}")
    labels = np.asarray(
        [str(g) for g in groups] if groups is not None else [str(i) for i in range(len(w))]
    )
    if len(labels) != len(w):
        raise ValueError(f"groups must have one id per pair: {len(labels)} != {len(w)}")
    grid = _grid(dims, lambdas, w.shape[1])
    notify = progress or (lambda stage, done, total: None)
    unique = sorted(set(labels.tolist()))
    fitted_on = {
        "pairs": len(w),
        "items": len(unique),
        "holdout": holdout,
        "seed": seed,
    }

    def refit(mask: np.ndarray) -> _Whitening:
        both = np.concatenate([w[mask], p[mask]])
        diff = w[mask] - p[mask]
        return _Whitening(both, diff.T @ diff / max(len(diff), 1))

    def finish(params: tuple[int, float]) -> Projection:
        notify("refit", 0, 1)
        whitening = refit(np.ones(len(w), dtype=bool))
        axes = whitening.axes(params[1])[:, : params[0]]
        info = {"method": "cross-domain", "dim": params[0], "lam": params[1]}
        notify("refit", 1, 1)
        return Projection(axes, whitening.mean, VERSION, info, fitted_on)

    if holdout == 0.0:
        if len(grid) != 1:
            raise ValueError("holdout=0 fits fixed parameters: give exactly one dim and one lambda")
        point = GridPoint(grid[0][0], grid[0][1], {}, float("nan"))
        return TuneResult(finish(grid[0]), point, GridPoint(0, 0.0, {}, float("nan")), (point,), {})

    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if len(unique) < 2:
        raise CatalogueError("cross-domain tuning needs pairs of at least 2 items to hold some out")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    rng = np.random.default_rng(seed)
    k = min(max(round(holdout * len(unique)), 1), len(unique) - 1)
    helds = []
    for _ in range(splits):
        held_items = set(rng.choice(np.array(unique), size=k, replace=False).tolist())
        helds.append(np.array([label in held_items for label in labels]))

    def score(held: np.ndarray, proj: Projection | None) -> dict[str, dict[str, float]]:
        def f(v: np.ndarray) -> np.ndarray:
            return proj.apply(v) if proj is not None else l2_normalise(v)

        return {"cross": _evaluate(f(p[held]), labels[held], f(w[held]), labels[held], "views")}

    # Each grid point is scored on every split (refitted without that split's items) and ranked
    # by the mean: one split of ~80 garments chose dims from 64 to 192 on the fashion pairs.
    baseline_runs = [score(held, None) for held in helds]
    runs: dict[tuple[int, float], list[dict[str, dict[str, float]]]] = {}
    for n, held in enumerate(helds):
        whitening = refit(~held)
        for lam, dims_for_lam in _by_lambda(grid):
            axes = whitening.axes(lam)
            for dim in dims_for_lam:
                proj = Projection(axes[:, :dim], whitening.mean)
                runs.setdefault((dim, lam), []).append(score(held, proj))
                notify("tune", n * len(grid) + _count(runs, n), splits * len(grid))
    baseline = _mean_point(0, 0.0, baseline_runs)
    points = [_mean_point(dim, lam, runs[dim, lam]) for dim, lam in grid if (dim, lam) in runs]
    chosen = _choose(points, ("cross",))
    split = {
        "fraction": holdout,
        "seed": seed,
        "splits": splits,
        "fit_pairs": int((~helds[0]).sum()),
        "held_out_pairs": int(helds[0].sum()),
        "items": len(unique),
        "held_out_items": k,
    }
    return TuneResult(finish((chosen.dim, chosen.lam)), chosen, baseline, tuple(points), split)


def _count(runs: Mapping[tuple[int, float], list[Any]], n: int) -> int:
    """Grid points scored so far on split `n` (for progress)."""
    return sum(1 for scored in runs.values() if len(scored) > n)


def _mean_point(
    dim: int,
    lam: float,
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    modes: Sequence[str] = ("cross",),
) -> GridPoint:
    """One grid point's metrics averaged over splits (`queries` summed); its score is the mean
    Recall@1 of `modes`."""
    metrics = {
        mode: {
            key: (
                float(sum(r[mode][key] for r in runs))
                if key == "queries"
                else float(np.mean([r[mode][key] for r in runs]))
            )
            for key in runs[0][mode]
        }
        for mode in runs[0]
    }
    return GridPoint(dim, lam, metrics, float(np.mean([metrics[m]["recall@1"] for m in modes])))


class _Whitening:
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


def _within_scatter(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
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


def _refit(
    x: np.ndarray,
    labels: np.ndarray,
    params: tuple[int, float],
    method: str,
    fitted_on: Mapping[str, Any],
) -> Projection:
    dim, lam = params
    whitening = _Whitening(x, _within_scatter(x, labels))
    info = {"method": method, "dim": dim, "lam": lam}
    return Projection(whitening.axes(lam)[:, :dim], whitening.mean, VERSION, info, fitted_on)


def _choose(points: Sequence[GridPoint], modes: Sequence[str]) -> GridPoint:
    def key(point: GridPoint) -> tuple[float, float, int, float]:
        mean_ap = float(np.mean([point.metrics[m]["map"] for m in modes]))
        # Rounded: a difference of round-off must not beat "smaller dim, stronger lam".
        return (round(point.score, 9), round(mean_ap, 9), -point.dim, point.lam)

    return max(points, key=key)


def _check_inputs(vectors: np.ndarray, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    x = _as_matrix(vectors, "vectors")
    labels = np.asarray([str(i) for i in items])
    if labels.shape != (len(x),):
        raise ValueError(f"items must have one id per vector: {labels.shape[0]} != {len(x)}")
    return x, labels


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be an (N, D) array with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _grid(dims: Sequence[int], lambdas: Sequence[float], d_in: int) -> list[tuple[int, float]]:
    if any(int(d) < 1 for d in dims) or any(float(lam) < 0 for lam in lambdas):
        raise ValueError("dims must be >= 1 and lambdas >= 0")
    usable = sorted({int(d) for d in dims if int(d) <= d_in}) or [d_in]
    lams = sorted({float(lam) for lam in lambdas})
    if not lams:
        raise ValueError("give at least one lambda")
    return [(d, lam) for lam in lams for d in usable]


def _by_lambda(grid: Sequence[tuple[int, float]]) -> list[tuple[float, list[int]]]:
    out: dict[float, list[int]] = {}
    for dim, lam in grid:
        out.setdefault(lam, []).append(dim)
    return list(out.items())


def _sample(x: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= MAX_HELD_OUT:
        return x, labels
    rows = np.sort(np.random.default_rng(seed + 1).choice(len(x), MAX_HELD_OUT, replace=False))
    return x[rows], labels[rows]


# ---------------------------------------------------------------------------------------------
# Scoring (item level, with lookalike.evaluation.metrics's metrics)
# ---------------------------------------------------------------------------------------------


def item_rankings(
    gallery: np.ndarray,
    gallery_items: Sequence[str],
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


def _evaluate(
    gallery: np.ndarray,
    gallery_items: np.ndarray,
    queries: np.ndarray,
    query_items: np.ndarray,
    mode: Mode,
) -> dict[str, float]:
    from lookalike.evaluation.metrics import evaluate

    ranked = item_rankings(gallery, gallery_items, queries, mode=mode)
    return evaluate(ranked, [str(i) for i in query_items])
