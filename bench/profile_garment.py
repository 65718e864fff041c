"""Per-stage CPU milliseconds per photo of garment indexing (decode, YOLOX, PAN, cut-out, embedding).

    nice .venv/bin/python bench/profile_garment.py --data DATA [--n 24] [--fit 0|1]

Each stage is timed with `time.process_time` around the same calls indexing makes; medians over photos.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--fit", type=int, default=1, help="YOLOX and PAN fit_small")
    args = ap.parse_args()

    import numpy as np
    from bench_models import store_and_lite2

    from lookalike.pipeline.detect import YoloxDetector, most_relevant
    from lookalike.pipeline.isolate import Isolator, clip_box, cut_out, pixels, split_garments

    models, embedder = store_and_lite2()
    detector = YoloxDetector.from_store(models, fit_small=bool(args.fit))
    iso = Isolator.from_store(models, ("garment",), clothes_fit_small=bool(args.fit))
    rows = list(csv.DictReader((args.data / "fashion" / "pairs.csv").open()))[: args.n]
    paths = [args.data / "fashion" / r["worn_image"] for r in rows]
    stages: dict[str, list[float]] = {}

    def tick(name: str, t: float) -> float:
        now = time.process_time()
        stages.setdefault(name, []).append((now - t) * 1000)
        return now

    embedder.embed_images([Image.open(paths[0]).convert("RGB")])
    for p in paths[:2]:  # warm-up: first runs of each session (and PAN's per-side sessions)
        im = Image.open(p).convert("RGB")
        b = most_relevant(detector.detect(im), im.size, {"person"})
        iso.clothes_masker.parts(im.crop(pixels(clip_box(b.box, im.size))))
    for p in paths:
        t = time.process_time()
        im = Image.open(p).convert("RGB")
        im.load()
        t = tick("decode", t)
        embedder.embed_images([im])
        t = tick("embed whole photo", t)
        dets = detector.detect(im)
        t = tick("yolox", t)
        best = most_relevant(dets, im.size, {"person"})
        box = clip_box(best.box, im.size)
        crop = im.crop(pixels(box))
        skin, clothes, hair = iso.clothes_masker.parts(crop)
        t = tick("pan (incl. resize back)", t)
        alpha = np.clip(clothes - np.maximum(skin, hair), 0.0, 1.0)
        split = split_garments(alpha, np.asarray(crop))
        t = tick("split_garments", t)
        alpha[(split or round(0.55 * alpha.shape[0])) :] = 0
        cut = cut_out(im, alpha, box, margin=iso.margin, aspect=iso.aspect).flatten()
        t = tick("cut_out", t)
        embedder.embed_images([cut])
        t = tick("embed garment view", t)
    out = {k: round(statistics.median(v), 1) for k, v in stages.items()}
    print(json.dumps(out, indent=1))
    print("size", im.size)


if __name__ == "__main__":
    main()
