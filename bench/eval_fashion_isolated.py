"""Fashion worn photo -> product shot with garment isolation and the cross-domain projection.

    export LOOKALIKE_MODELS_MIRROR=/work/shared/models LOOKALIKE_CACHE_DIR=$PWD/.cache/lookalike
    .venv/bin/python bench/eval_fashion_isolated.py --data ../shared/data/fashion \
        --cache /work/cache/accuracy/fashion_lite2_garment.npz --json fashion.json
    # another embedder (a new --cache: vectors are cached per file), query-side TTA
    .venv/bin/python bench/eval_fashion_isolated.py --data ../shared/data/fashion \
        --cache /work/cache/fashion_ens.npz --embedder efficientnet-lite2+lite1 --tta flip+crops

Every photo goes through the engine's own view pipeline (`Engine.query_views` with
`detect=True, isolate="garment", garment="upper", labels="fashion"`: YOLOX-Nano finds the person,
PAN x U^2-NetP cut out the top, flattened on a plain background; a photo without a relevant
object stays whole, which is what happens to most product shots) and the embedder (`--embedder`,
default Lite2; `--tta` embeds the worn photos' views as the engine embeds a query with that TTA). Vectors
are cached in `--cache`. Then `bench/eval_tune.py`'s `fashion_cross_domain`: split by garment
(seed 0), the projection fitted on 300 garments (parameters chosen on a held-out 20 % of those),
R@1 of the other 300 garments' worn photos among their 300 product shots, and the halves swapped.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from common import embed_fashion, fashion_cross_domain, tune_markdown

    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--garment", default="upper")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--embedder", default="efficientnet-lite2", help="catalogue model name")
    parser.add_argument(
        "--tta",
        default="none",
        choices=["none", "flip", "crops", "flip+crops", "choose"],
        help="query-side test-time augmentation of the worn photos (the engine's LOOKALIKE_TTA); "
        "choose: per fold, the mode whose cross-domain fit scores best on the fit garments' "
        "held-out draws (the report garments are not looked at)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            index=Path(tmp) / "index",
            detect=True,
            isolate="garment",
            garment=args.garment,
            labels="fashion",
            embedder=args.embedder,
        )
        engine = Engine(settings.index, settings=settings)
        labels: dict[str, int] = {}
        started = time.perf_counter()

        def embed(images: list) -> np.ndarray:  # type: ignore[type-arg]
            views = []
            for image in images:
                view = engine.query_views(image)[0]
                labels[view.label] = labels.get(view.label, 0) + 1
                views.append(view.image.convert("RGB"))
            return engine.embedder.embed_images(views)

        vectors = embed_fashion(args.data, args.cache, embed=embed)
        if labels:
            print(f"views used: {labels} in {time.perf_counter() - started:.0f} s", flush=True)
        if args.tta == "choose":
            worn = {mode: worn_with_tta(engine, vectors, args.cache, mode) for mode in TTA_MODES}
            report = choose_tta(vectors["product_vectors"], worn, vectors["garment_ids"])
            print(json.dumps(report, indent=2, default=float))
            if args.json:
                args.json.write_text(json.dumps(report, indent=2, default=float))
            return
        if args.tta != "none":
            vectors["worn_vectors"] = worn_with_tta(engine, vectors, args.cache, args.tta)
    report = fashion_cross_domain(
        vectors["product_vectors"], vectors["worn_vectors"], vectors["garment_ids"]
    )
    print(tune_markdown({"fashion": report}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


TTA_MODES = ("none", "flip", "crops", "flip+crops")


def choose_tta(
    product: np.ndarray,
    worn: dict[str, np.ndarray],
    garment_ids: np.ndarray,
    *,
    fit_garments: int = 300,
    seed: int = 0,
) -> dict[str, object]:
    """The two folds of `eval_tune.fashion_cross_domain` (same seed, same halves), with the worn
    photos' TTA mode chosen per fold by the cross-domain fit's own held-out score (mean R@1 of 5
    draws of the fit garments); R@1 of the report garments with that mode's vectors and fit."""
    from common import garment_folds

    from lookalike.evaluation.metrics import evaluate
    from lookalike.learn.tuning import fit_cross_domain, item_rankings

    ids = np.asarray([str(g) for g in garment_ids])
    folds = garment_folds(len(ids), fit_garments, seed)
    out: dict[str, object] = {"folds": []}
    for fold, (fit, rep) in enumerate(folds):
        scored = {}
        for mode, vectors in worn.items():
            result = fit_cross_domain(vectors[fit], product[fit], groups=ids[fit], seed=seed)
            proj = result.projection
            ranked = item_rankings(
                proj.apply(product[rep]), ids[rep], proj.apply(vectors[rep]), mode="views"
            )
            scored[mode] = {
                "held_out_r1": result.chosen.score,
                "chosen": (result.chosen.dim, result.chosen.lam),
                "report": evaluate(ranked, ids[rep].tolist()),
            }
            print(f"fold {fold} {mode}: held-out {result.chosen.score:.3f}", flush=True)
        best = max(TTA_MODES, key=lambda m: scored[m]["held_out_r1"])
        out["folds"].append({"fold": fold, "chosen_tta": best, "modes": scored})  # type: ignore[union-attr]
        print(f"fold {fold}: chose {best}, report R@1 {scored[best]['report']['recall@1']:.3f}")
    return out


def worn_with_tta(engine: object, vectors: dict, cache: Path, mode: str) -> np.ndarray:  # type: ignore[type-arg]
    """The worn photos' query vectors as the engine makes them with `LOOKALIKE_TTA=mode`: the
    normalised mean of the garment view's and its augmentations' vectors (cached beside `cache`)."""
    from lookalike.pipeline.decode import load_image
    from lookalike.pipeline.embed import tta_embed

    if mode == "none":
        return vectors["worn_vectors"]  # type: ignore[no-any-return]
    path = cache.with_name(f"{cache.stem}.worn-tta-{mode}.npz")
    if path.exists():
        with np.load(path) as npz:
            return npz["worn_vectors"]
    out = []
    for n, image in enumerate(vectors["worn_images"], start=1):
        view = engine.query_views(load_image(str(image)).image)[0]  # type: ignore[attr-defined]
        out.append(tta_embed(engine.embedder.embed_images, view.image.convert("RGB"), mode)[0])  # type: ignore[attr-defined]
        if n % 100 == 0:
            print(f"worn tta {mode}: {n}/{len(vectors['worn_images'])}", flush=True)
    worn = np.stack(out).astype(np.float32)
    np.savez(path, worn_vectors=worn)
    return worn


if __name__ == "__main__":
    main()
