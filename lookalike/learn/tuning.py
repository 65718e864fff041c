"""Fitting a `Projection` (`lookalike.learn.projection`): the held-out split, the choice of
(`dim`, `lam`) on held-out photos, the catalogue fit (`fit_projection`, `fit_grid`) and the
cross-domain fit (`fit_cross_domain`); the item-level ranking of held-out photos
(`item_rankings`, scored with lookalike.evaluation.metrics's metrics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lookalike.errors import CatalogueError
from lookalike.learn.projection import (
    DEFAULT_CROSS_SPLITS,
    DEFAULT_DIMS,
    DEFAULT_HOLDOUT,
    DEFAULT_LAMBDAS,
    DEFAULT_SPLITS,
    MAX_HELD_OUT,
    PAIRS_HINT,
    RANK_DEPTH,
    VERSION,
    Criterion,
    GridPoint,
    Mode,
    Progress,
    Projection,
    TuneResult,
    Whitening,
    within_scatter,
)
from lookalike.pipeline.embed import l2_normalise

FIT, QUERY, REFERENCE = 0, 1, 2
"""Roles of a photo while parameters are chosen (`holdout_split`): fitted (and searched among);
held out and searched for; held out and searched among without being fitted."""


def holdout_split(items: Sequence[str] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
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

        fit = Whitening(x[fit_mask], within_scatter(x[fit_mask], labels[fit_mask]))
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
    whitening = Whitening(x, within_scatter(x, labels))
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

    def refit(mask: np.ndarray) -> Whitening:
        both = np.concatenate([w[mask], p[mask]])
        diff = w[mask] - p[mask]
        return Whitening(both, diff.T @ diff / max(len(diff), 1))

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
                scored = sum(1 for r in runs.values() if len(r) > n)  # grid points done on split n
                notify("tune", n * len(grid) + scored, splits * len(grid))
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


def _refit(
    x: np.ndarray,
    labels: np.ndarray,
    params: tuple[int, float],
    method: str,
    fitted_on: Mapping[str, Any],
) -> Projection:
    dim, lam = params
    whitening = Whitening(x, within_scatter(x, labels))
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
