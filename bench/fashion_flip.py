"""Fashion cross-domain with mirrored copies: flipped pairs in the fit, and flip averaging of views.

    export LOOKALIKE_MODELS_MIRROR=... LOOKALIKE_CACHE_DIR=...
    .venv/bin/python bench/fashion_flip.py --data ../shared/data/fashion \
        --cache CACHE.npz --flipped-cache FLIPPED.npz

CACHE.npz: the garment-isolated vectors of `bench/eval_fashion_isolated.py` (same --cache). The
mirrored view of every photo (the same query view, flipped left-right) is embedded into
FLIPPED.npz. Same split as `eval_tune.fashion_cross_domain` (seed 0, 300 garments fitted, the
other 300 reported, and swapped); prints held-out R@1 for: plain, cross-domain projection, the
projection fitted with the flipped pairs added, and that projection with every view (query and
catalogue) replaced by the normalised mean of it and its mirror.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def main() -> None:
    from common import embed_fashion, fashion_score

    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.learn.tuning import fit_cross_domain
    from lookalike.pipeline.embed import l2_normalise

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--flipped-cache", type=Path, required=True)
    args = parser.parse_args()
    base = embed_fashion(args.data, args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            index=Path(tmp) / "index", detect=True, isolate="garment", labels="fashion"
        )
        engine = Engine(settings.index, settings=settings)

        def mirrored(images: list[Image.Image]) -> np.ndarray:
            views = [engine.query_views(im)[0].image.convert("RGB") for im in images]
            return engine.embedder.embed_images([ImageOps.mirror(v) for v in views])

        flipped = embed_fashion(args.data, args.flipped_cache, embed=mirrored)
    p, w, ids = base["product_vectors"], base["worn_vectors"], base["garment_ids"]
    pf, wf = flipped["product_vectors"], flipped["worn_vectors"]
    order = np.random.default_rng(0).permutation(len(ids))
    for fold, (fit, rep) in enumerate([(order[:300], order[300:]), (order[300:], order[:300])]):
        cross = fit_cross_domain(w[fit], p[fit], groups=ids[fit], seed=0)
        both = fit_cross_domain(
            np.concatenate([w[fit], wf[fit]]),
            np.concatenate([p[fit], pf[fit]]),
            groups=np.concatenate([ids[fit], ids[fit]]),
            seed=0,
        )
        plain = (p[rep], ids[rep], w[rep], ids[rep], "views")
        mean = (l2_normalise(p[rep] + pf[rep]), ids[rep], l2_normalise(w[rep] + wf[rep]), ids[rep])
        rows = {
            "plain": fashion_score(*plain),
            "cross-domain projection": fashion_score(*plain, cross.projection),
            "+ flipped pairs in the fit": fashion_score(*plain, both.projection),
            "+ flip-averaged views (query and catalogue)": fashion_score(
                *mean, "views", both.projection
            ),
            "flip-averaged views, no projection": fashion_score(*mean, "views"),
        }
        for name, metrics in rows.items():
            print(
                f"fold {fold}: {name}: R@1 {metrics['recall@1']:.3f} R@3 {metrics['recall@3']:.3f}"
            )


if __name__ == "__main__":
    main()
