"""Measure the catalogue-adapted projection (`lookalike.learn.projection`) on grocery and fashion.

    export LOOKALIKE_MODELS_MIRROR=../shared/models LOOKALIKE_CACHE_DIR=$PWD/.cache/lookalike
    .venv/bin/python bench/eval_tune.py \
        --grocery /work/cache/grocery_lite2_gem.npz \
        --fashion-data ../shared/data/fashion --fashion-cache /work/cache/fashion_lite2_whole.npz \
        --json bench-tune.json

Grocery works from cached plain-pipeline embeddings (an npz with `cat_vectors`, `cat_items`,
`cat_images`, `query_vectors`, `query_items`, `query_images`): catalogue = iconic + train photos,
queries = val photos. The projection is fitted on catalogue vectors only (its parameters chosen on a
held-out part of the catalogue photos); the val photos are touched only to report the figures.

Fashion embeds the whole product and worn photos once (cached to `--fashion-cache`), fits a
cross-domain projection on the worn/product pairs of half the garments and reports worn -> product
retrieval on the other half, over that half's product shots only. `fashion_cross_domain` takes
vectors, so it can be rerun on embeddings of isolated garment crops.

Prints markdown tables (for docs/parts/tune.md) and optionally writes the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.evaluation.metrics import evaluate
from lookalike.learn.projection import Projection, TuneResult
from lookalike.learn.ranking import item_rankings
from lookalike.learn.tuning import fit_cross_domain, fit_grid, fit_projection
from lookalike.types import F32

KS = (1, 3, 10)

# ---------------------------------------------------------------------------------------------
# Embedding the fashion pairs
# ---------------------------------------------------------------------------------------------


def lite2_embed() -> Callable[[Sequence[Image.Image]], F32]:
    """The plain EfficientNet-Lite2 embedder (GeM, the engine's default preprocessing)."""
    from lookalike.config import Settings
    from lookalike.models.catalog import get_spec
    from lookalike.models.store import ModelStore
    from lookalike.pipeline.embed import load_embedder

    settings = Settings()
    spec = get_spec("efficientnet-lite2")
    model_dir = ModelStore(settings.cache_dir, mirror=settings.models_mirror).path(spec.name)
    embedder = load_embedder(spec, model_dir)
    return embedder.embed_images


def read_pairs(data_dir: Path) -> list[tuple[str, Path, Path]]:
    """`pairs.csv` rows as (garment_id, product photo, worn photo), paths resolved."""
    with open(data_dir / "pairs.csv", newline="") as fh:
        return [
            (row["garment_id"], data_dir / row["product_image"], data_dir / row["worn_image"])
            for row in csv.DictReader(fh)
        ]


def embed_fashion(
    data_dir: Path,
    cache: Path,
    *,
    embed: Callable[[Sequence[Image.Image]], F32] | None = None,
    batch: int = 8,
) -> dict[str, np.ndarray]:
    """Whole-photo vectors of every pair, read from `cache` when it exists, else computed and saved.

    Returns `product_vectors`, `worn_vectors` (N, D) L2-normalised float32, and `garment_ids` (N,)
    in pairs.csv order. `embed` maps decoded RGB photos to vectors (default: plain Lite2); pass an
    isolating pipeline (and another cache path) to measure on garment crops.
    """
    if cache.exists():
        with np.load(cache) as npz:
            return {key: npz[key] for key in npz.files}
    from lookalike.pipeline.decode import load_image

    embed = embed or lite2_embed()
    pairs = read_pairs(data_dir)
    out: dict[str, list[F32]] = {"product_vectors": [], "worn_vectors": []}
    for key, column in (("product_vectors", 1), ("worn_vectors", 2)):
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            images = [load_image(str(row[column])).image for row in chunk]
            out[key].append(embed(images))
            print(f"{key}: {start + len(chunk)}/{len(pairs)}", flush=True)
    arrays = {
        "product_vectors": np.concatenate(out["product_vectors"]).astype(np.float32),
        "worn_vectors": np.concatenate(out["worn_vectors"]).astype(np.float32),
        "garment_ids": np.array([row[0] for row in pairs]),
        "product_images": np.array([str(row[1]) for row in pairs]),
        "worn_images": np.array([str(row[2]) for row in pairs]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def score(
    gallery: np.ndarray,
    gallery_items: Sequence[str],
    queries: np.ndarray,
    query_items: Sequence[str],
    mode: str,
    projection: Projection | None = None,
) -> dict[str, float]:
    """Item-level metrics (lookalike.evaluation.metrics.evaluate) of queries against a gallery of views.

    With a projection, views and queries are projected (the centroid is then the re-normalised
    mean of the projected views, as the engine would store it).
    """
    if projection is not None:
        gallery, queries = projection.apply(gallery), projection.apply(queries)
    ranked = item_rankings(gallery, gallery_items, queries, mode=mode)  # type: ignore[arg-type]
    return evaluate(ranked, [str(i) for i in query_items], KS)


def _row(name: str, metrics: dict[str, float]) -> dict[str, Any]:
    return {"setting": name, **{k: round(float(v), 4) for k, v in metrics.items()}}


def _choice(result: TuneResult) -> dict[str, Any]:
    return {
        "dim": result.chosen.dim,
        "lam": result.chosen.lam,
        "held_out": {m: dict(v) for m, v in result.chosen.metrics.items()},
        "held_out_without": {m: dict(v) for m, v in result.baseline.metrics.items()},
        "split": dict(result.split),
        "sha256": result.projection.sha256,
    }


# ---------------------------------------------------------------------------------------------
# Grocery
# ---------------------------------------------------------------------------------------------


def grocery_report(npz: Path, *, seeds: Sequence[int] = (0, 1, 2)) -> dict[str, Any]:
    """Plain vs projected retrieval of the val photos; full catalogue and iconic-only catalogue.

    Every projection is fitted on catalogue vectors only; `seeds` repeat the held-out choice with
    other splits to show how stable it is. The `oracle` section scores the whole grid on val: it
    is NOT used for any choice, it only shows how far the held-out choice is from the best in
    hindsight.
    """
    with np.load(npz) as data:
        cat, cat_items, cat_images = data["cat_vectors"], data["cat_items"], data["cat_images"]
        queries, query_items = data["query_vectors"], data["query_items"]
    iconic = np.array(["iconic-images" in str(p) for p in cat_images])
    out: dict[str, Any] = {"catalogue": len(cat), "queries": len(queries)}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    full = fit_projection(cat, cat_items, seed=seeds[0])
    timings["fit_projection all catalogue photos (s)"] = time.perf_counter() - t
    rows = []
    for mode in ("views", "centroid"):
        rows.append(_row(f"{mode}, plain", score(cat, cat_items, queries, query_items, mode)))
        rows.append(
            _row(
                f"{mode}, projected",
                score(cat, cat_items, queries, query_items, mode, full.projection),
            )
        )
    out["full"] = {"rows": rows, "choice": _choice(full), "grid": full.table()}
    cross_rows = []  # filled below, once the cross-domain projection exists

    # One photo per item indexed (the iconic shot); the projection is learned from photos the
    # catalogue has but does not index.
    t = time.perf_counter()
    train_only = fit_projection(cat[~iconic], cat_items[~iconic], seed=seeds[0])
    timings["fit_projection train photos (s)"] = time.perf_counter() - t
    icon_of = {str(i): v for i, v, is_icon in zip(cat_items, cat, iconic, strict=True) if is_icon}
    train_items = cat_items[~iconic]
    t = time.perf_counter()
    cross = fit_cross_domain(
        cat[~iconic], np.stack([icon_of[str(i)] for i in train_items]), groups=train_items
    )
    timings["fit_cross_domain train->iconic pairs (s)"] = time.perf_counter() - t
    for mode in ("views", "centroid"):
        cross_rows.append(
            _row(
                f"{mode}, cross-domain projection (train photo, iconic) pairs",
                score(cat, cat_items, queries, query_items, mode, cross.projection),
            )
        )
    out["full"]["rows_cross"] = cross_rows
    g, gi = cat[iconic], cat_items[iconic]
    out["iconic_only"] = {
        "rows": [
            _row("plain", score(g, gi, queries, query_items, "views")),
            _row(
                "projection from train photos",
                score(g, gi, queries, query_items, "views", train_only.projection),
            ),
            _row(
                "projection from train + iconic photos",
                score(g, gi, queries, query_items, "views", full.projection),
            ),
            _row(
                "cross-domain projection (train photo, iconic) pairs",
                score(g, gi, queries, query_items, "views", cross.projection),
            ),
        ],
        "choice_train_only": _choice(train_only),
        "choice_cross": _choice(cross),
        "grid_cross": cross.table(),
    }

    stability = []
    for seed in seeds:
        result = full if seed == seeds[0] else fit_projection(cat, cat_items, seed=seed)
        stability.append(
            {
                "seed": seed,
                "dim": result.chosen.dim,
                "lam": result.chosen.lam,
                "views": score(cat, cat_items, queries, query_items, "views", result.projection),
                "centroid": score(
                    cat, cat_items, queries, query_items, "centroid", result.projection
                ),
            }
        )
    out["seeds"] = stability

    # Hindsight on val (reported only): the same grid refitted on every catalogue photo.
    oracle = []
    every = fit_grid(
        cat, cat_items, dims=[p.dim for p in full.grid], lambdas=[p.lam for p in full.grid]
    )
    for point in full.grid:
        proj = every[point.dim, point.lam]
        oracle.append(
            {
                "dim": point.dim,
                "lam": point.lam,
                "held_out_score": point.score,
                "val_views_r1": score(cat, cat_items, queries, query_items, "views", proj)[
                    "recall@1"
                ],
                "val_centroid_r1": score(cat, cat_items, queries, query_items, "centroid", proj)[
                    "recall@1"
                ],
            }
        )
    out["oracle"] = oracle
    out["timings"] = timings
    return out


# ---------------------------------------------------------------------------------------------
# Fashion
# ---------------------------------------------------------------------------------------------


def garment_folds(n: int, fit_garments: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two (fit rows, report rows) folds of the fashion benchmarks: the garments shuffled with
    `seed`, the first `fit_garments` fitted and the rest reported, then the halves swapped."""
    order = np.random.default_rng(seed).permutation(n)
    return [
        (order[:fit_garments], order[fit_garments:]),
        (order[fit_garments:], order[:fit_garments]),
    ]


def fashion_cross_domain(
    product: np.ndarray,
    worn: np.ndarray,
    garment_ids: Sequence[str],
    *,
    fit_garments: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Worn photo -> product shot, split by garment: fit on `fit_garments`, report on the rest.

    product, worn: (N, D) vectors of the same garment per row (whole photos here; pass vectors of
    isolated garment crops to measure the projection on them). The garments are shuffled with
    `seed`; the first `fit_garments` are the only ones the projections see (their parameters chosen
    on a held-out 20 % of those); the others' worn photos search among the others' product shots
    (N - fit_garments candidates). Both halves are also swapped (2-fold) to show the spread.
    """
    ids = np.asarray([str(g) for g in garment_ids])
    folds = garment_folds(len(ids), fit_garments, seed)
    out: dict[str, Any] = {"garments": len(ids), "fit_garments": fit_garments, "folds": []}
    for fold, (fit, rep) in enumerate(folds):
        t = time.perf_counter()
        cross = fit_cross_domain(worn[fit], product[fit], groups=ids[fit], seed=seed)
        seconds = time.perf_counter() - t
        # The within-item fit sees each garment as an item with two photos (worn + product).
        within = fit_projection(
            np.concatenate([worn[fit], product[fit]]),
            np.concatenate([ids[fit], ids[fit]]),
            seed=seed,
        )
        args = (product[rep], ids[rep], worn[rep], ids[rep], "views")
        out["folds"].append(
            {
                "fold": fold,
                "fit_on": len(fit),
                "report_on": len(rep),
                "candidates": len(rep),
                "rows": [
                    _row("plain", score(*args)),
                    _row("cross-domain projection", score(*args, cross.projection)),
                    _row("within-item projection", score(*args, within.projection)),
                ],
                "choice_cross": _choice(cross),
                "choice_within": _choice(within),
                "grid_cross": cross.table(),
                "fit_seconds": seconds,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| setting | R@1 | R@3 | R@10 | mAP |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['recall@1']:.3f} | {r['recall@3']:.3f} | "
            f"{r['recall@10']:.3f} | {r['map']:.3f} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    parts = []
    if "grocery" in report:
        g = report["grocery"]
        parts += [
            f"## Grocery: {g['catalogue']} catalogue photos, {g['queries']} val queries",
            _table([*g["full"]["rows"], *g["full"].get("rows_cross", [])]),
            f"held-out choice: {json.dumps(g['full']['choice'])}",
            g["full"]["grid"],
            "### One photo per item indexed (iconic)",
            _table(g["iconic_only"]["rows"]),
            f"train-only choice: {json.dumps(g['iconic_only']['choice_train_only'])}",
            f"cross-domain choice: {json.dumps(g['iconic_only']['choice_cross'])}",
            "### Held-out choice per seed (val figures)",
            "\n".join(
                f"- seed {s['seed']}: dim {s['dim']}, lam {s['lam']:g}: views R@1 "
                f"{s['views']['recall@1']:.3f}, centroid R@1 {s['centroid']['recall@1']:.3f}"
                for s in g["seeds"]
            ),
            "### Hindsight: the grid on val (not used for the choice)",
            "\n".join(
                [
                    "| dim | lambda | held-out score | val views R@1 | val centroid R@1 |",
                    "|---|---|---|---|---|",
                    *(
                        f"| {o['dim']} | {o['lam']:g} | {o['held_out_score']:.3f} | "
                        f"{o['val_views_r1']:.3f} | {o['val_centroid_r1']:.3f} |"
                        for o in g["oracle"]
                    ),
                ]
            ),
            f"timings: {json.dumps({k: round(v, 1) for k, v in g['timings'].items()})}",
        ]
    if "fashion" in report:
        f = report["fashion"]
        for fold in f["folds"]:
            parts += [
                f"## Fashion fold {fold['fold']}: fit on {fold['fit_on']} garments, "
                f"report on {fold['report_on']} (worn -> {fold['candidates']} product shots)",
                _table(fold["rows"]),
                f"cross-domain choice: {json.dumps(fold['choice_cross'])}",
                f"within-item choice: {json.dumps(fold['choice_within'])}",
                fold["grid_cross"],
            ]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grocery", type=Path, help="npz of cached grocery embeddings")
    parser.add_argument("--fashion-data", type=Path, help="the fashion data folder (pairs.csv)")
    parser.add_argument("--fashion-cache", type=Path, help="npz cache of the fashion embeddings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.grocery:
        seeds = (args.seed, args.seed + 1, args.seed + 2)
        report["grocery"] = grocery_report(args.grocery, seeds=seeds)
        print(markdown({"grocery": report["grocery"]}), flush=True)
    if args.fashion_cache:
        if args.fashion_data is None and not args.fashion_cache.exists():
            parser.error("--fashion-data is needed to compute the fashion embeddings")
        v = embed_fashion(args.fashion_data or Path("."), args.fashion_cache)
        report["fashion"] = fashion_cross_domain(
            v["product_vectors"], v["worn_vectors"], v["garment_ids"], seed=args.seed
        )
    if "fashion" in report:
        print(markdown({"fashion": report["fashion"]}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
