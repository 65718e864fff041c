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
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    embed_fashion,
    fashion_cross_domain,
    fashion_score,
    row,
    tune_choice,
    tune_markdown,
)

from lookalike.learn.tuning import (
    fit_cross_domain,
    fit_grid,
    fit_projection,
)

# ---------------------------------------------------------------------------------------------
# Embedding the fashion pairs
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


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
        rows.append(
            row(f"{mode}, plain", fashion_score(cat, cat_items, queries, query_items, mode))
        )
        rows.append(
            row(
                f"{mode}, projected",
                fashion_score(cat, cat_items, queries, query_items, mode, full.projection),
            )
        )
    out["full"] = {"rows": rows, "choice": tune_choice(full), "grid": full.table()}
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
            row(
                f"{mode}, cross-domain projection (train photo, iconic) pairs",
                fashion_score(cat, cat_items, queries, query_items, mode, cross.projection),
            )
        )
    out["full"]["rows_cross"] = cross_rows
    g, gi = cat[iconic], cat_items[iconic]
    out["iconic_only"] = {
        "rows": [
            row("plain", fashion_score(g, gi, queries, query_items, "views")),
            row(
                "projection from train photos",
                fashion_score(g, gi, queries, query_items, "views", train_only.projection),
            ),
            row(
                "projection from train + iconic photos",
                fashion_score(g, gi, queries, query_items, "views", full.projection),
            ),
            row(
                "cross-domain projection (train photo, iconic) pairs",
                fashion_score(g, gi, queries, query_items, "views", cross.projection),
            ),
        ],
        "choice_train_only": tune_choice(train_only),
        "choice_cross": tune_choice(cross),
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
                "views": fashion_score(
                    cat, cat_items, queries, query_items, "views", result.projection
                ),
                "centroid": fashion_score(
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
                "val_views_r1": fashion_score(cat, cat_items, queries, query_items, "views", proj)[
                    "recall@1"
                ],
                "val_centroid_r1": fashion_score(
                    cat, cat_items, queries, query_items, "centroid", proj
                )["recall@1"],
            }
        )
    out["oracle"] = oracle
    out["timings"] = timings
    return out


# ---------------------------------------------------------------------------------------------
# Fashion
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


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
        print(tune_markdown({"grocery": report["grocery"]}), flush=True)
    if args.fashion_cache:
        if args.fashion_data is None and not args.fashion_cache.exists():
            parser.error("--fashion-data is needed to compute the fashion embeddings")
        v = embed_fashion(args.fashion_data or Path("."), args.fashion_cache)
        report["fashion"] = fashion_cross_domain(
            v["product_vectors"], v["worn_vectors"], v["garment_ids"], seed=args.seed
        )
    if "fashion" in report:
        print(tune_markdown({"fashion": report["fashion"]}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
