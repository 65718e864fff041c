"""Garment isolation at smaller network sides: held-out R@1 and per-stage CPU time, one variant a run.

    nice .venv/bin/python bench/garment_speed_quality.py --data DATA --pan 512 --yolox-fit 0|1 [--pan-fit 0|1] [--part held_out|tune200]
        [--out /work/cache/detect2/quality.json]

The 200 held-out worn photos (the last 200 of fashion/pairs.csv, as in docs/parts/isolation.md;
`--part tune200`: the first 200, which the isolation settings were tuned on) go
through `YoloxDetector` (most relevant `person`) and `Isolator.garment` (the default settings, upper
garment) exactly as indexing does, are embedded with EfficientNet-Lite2 and ranked against the 600
product shots (embeddings cached in /work/cache/detect/tune/products_lite2.npy by
bench/tune_garments.py, recomputed if missing). Reported: R@1/3/10 and median CPU ms per photo of
YOLOX and of the garment cut-out (PAN + split + cut).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--pan", type=int, default=512)
    ap.add_argument("--yolox-fit", type=int, default=1)
    ap.add_argument("--pan-fit", type=int, default=0)
    ap.add_argument("--part", choices=("held_out", "tune200"), default="held_out")
    ap.add_argument(
        "--products", type=Path, default=Path("/work/cache/detect/tune/products_lite2.npy")
    )
    ap.add_argument("--out", type=Path, default=Path("/work/cache/detect2/quality.json"))
    args = ap.parse_args()

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.pipeline.clip import load_embedder
    from lookalike.pipeline.detect import YoloxDetector, most_relevant
    from lookalike.pipeline.isolate import Isolator

    s = Settings()
    models = wiring.model_store(s)
    embedder = load_embedder(models.spec("efficientnet-lite2"), models.path("efficientnet-lite2"))
    detector = YoloxDetector.from_store(models, fit_small=bool(args.yolox_fit))
    isolator = Isolator.from_store(
        models, ("garment",), clothes_size=args.pan, clothes_fit_small=bool(args.pan_fit)
    )
    fashion = args.data / "fashion"
    rows = list(csv.DictReader((fashion / "pairs.csv").open()))
    if args.products.exists():
        products = np.load(args.products)
    else:
        products = np.concatenate(
            [
                embedder.embed_images(
                    [
                        Image.open(fashion / r["product_image"]).convert("RGB")
                        for r in rows[i : i + 8]
                    ]
                )
                for i in range(0, len(rows), 8)
            ]
        )
    first = 400 if args.part == "held_out" else 0
    held = rows[first : first + 200]
    cuts, t_det, t_iso = [], [], []
    for r in held:
        image = Image.open(fashion / r["worn_image"]).convert("RGB")
        t = time.process_time()
        best = most_relevant(detector.detect(image), image.size, {"person"})
        t_det.append(time.process_time() - t)
        t = time.process_time()
        cut = isolator.garment(image, best.box if best else None).flatten()
        t_iso.append(time.process_time() - t)
        cuts.append(cut)
    q = np.concatenate([embedder.embed_images(cuts[i : i + 8]) for i in range(0, len(cuts), 8)])
    sims = q @ products.T
    truth = np.arange(first, first + 200)
    ranks = (sims > sims[np.arange(200), truth][:, None]).sum(axis=1)
    res = {f"R@{k}": round(float((ranks < k).mean()), 3) for k in (1, 3, 10)}
    res["yolox_cpu_ms"] = round(statistics.median(t_det) * 1000, 1)
    res["garment_cpu_ms"] = round(statistics.median(t_iso) * 1000, 1)
    key = f"pan{args.pan}{'fit' if args.pan_fit else ''}_yoloxfit{args.yolox_fit}@{args.part}"
    print(key, json.dumps(res), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old[key] = res
    args.out.write_text(json.dumps(old, indent=1))


if __name__ == "__main__":
    main()
