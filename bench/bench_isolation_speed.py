"""Indexing speed with detection and isolation vs embedding alone, side by side in one process.

    nice .venv/bin/python bench/bench_isolation_speed.py --data DATA [--n 48] [--rounds 3] [--only fashion]
        [--out /work/cache/detect/speed.json]

Each configuration turns the same decoded photos into views (`views_for_image`, as indexing does)
and embeds them with EfficientNet-Lite2 in batches of 8; configurations run interleaved, `rounds`
times, and the median is kept (the machine is shared: read the ratios). Photos: the first `n`
grocery catalogue photos (iconic + train, every 20th) and `n` fashion worn photos (garment mode).
Reported: images/s (wall) and CPU-seconds per image, and the ratio to embedding alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/work/cache/detect/speed.json"))
    ap.add_argument("--only", choices=("grocery", "fashion"), default=None)
    args = ap.parse_args()

    import csv

    from bench_models import store_and_lite2

    from lookalike.pipeline.detect import LABEL_PRESETS, YoloxDetector
    from lookalike.pipeline.isolate import Isolator
    from lookalike.pipeline.views import ViewSettings, views_for_image

    models, embedder = store_and_lite2()
    detector = YoloxDetector.from_store(models)
    grocery_lines = (args.data / "grocery" / "train.txt").read_text().splitlines()[::20][: args.n]
    grocery = [
        Image.open(args.data / "grocery" / line.split(",")[0].strip()).convert("RGB")
        for line in grocery_lines
    ]
    rows = list(csv.DictReader((args.data / "fashion" / "pairs.csv").open()))[: args.n]
    worn = [Image.open(args.data / "fashion" / r["worn_image"]).convert("RGB") for r in rows]
    for im in grocery + worn:
        im.load()

    groc = LABEL_PRESETS["grocery"]
    salient_320 = Isolator.from_store(models, ("salient",), salient_size=320, batch_size=4)
    salient_fit = Isolator.from_store(models, ("salient",), batch_size=4, salient_fit_small=True)
    garment_iso = Isolator.from_store(models, ("garment",), batch_size=1)
    # Before YOLOX and PAN ran small photos at their own side (fit_small): both upscaled to 416 / 512.
    detector_416 = YoloxDetector.from_store(models, fit_small=False)
    garment_iso_512 = Isolator.from_store(
        models, ("garment",), batch_size=1, clothes_fit_small=False
    )
    garment_iso_sal = Isolator.from_store(
        models, ("garment",), salient_size=320, batch_size=1, garment_salient=True
    )
    configs = {
        "grocery: embed whole photo": (grocery, None, None, ViewSettings(detect=False)),
        "grocery: detect + embed views": (grocery, detector, None, ViewSettings(labels=groc)),
        "grocery: detect 416 (before fit_small) + embed views": (
            grocery,
            detector_416,
            None,
            ViewSettings(labels=groc),
        ),
        "grocery: detect + salient (fit_small, default) + embed views": (
            grocery,
            detector,
            salient_fit,
            ViewSettings(labels=groc, isolate="salient"),
        ),
        "grocery: detect 416 + salient 320 (before) + embed views": (
            grocery,
            detector_416,
            salient_320,
            ViewSettings(labels=groc, isolate="salient"),
        ),
        "fashion: embed whole photo": (worn, None, None, ViewSettings(detect=False)),
        "fashion: detect + garment (PAN, default) + embed": (
            worn,
            detector,
            garment_iso,
            ViewSettings(labels=frozenset({"person"}), isolate="garment", include_whole=False),
        ),
        "fashion: detect 416 + garment (PAN 512, before fit_small) + embed": (
            worn,
            detector_416,
            garment_iso_512,
            ViewSettings(labels=frozenset({"person"}), isolate="garment", include_whole=False),
        ),
        "fashion: detect + garment (PAN x salient 320) + embed": (
            worn,
            detector,
            garment_iso_sal,
            ViewSettings(labels=frozenset({"person"}), isolate="garment", include_whole=False),
        ),
    }
    if args.only:
        configs = {k: v for k, v in configs.items() if k.startswith(args.only)}
    walls: dict[str, list[float]] = {k: [] for k in configs}
    cpus: dict[str, list[float]] = {k: [] for k in configs}
    views: dict[str, int] = {}
    embedder.embed_images(grocery[:8])  # warm-up
    for _name, (images, det, iso, vs) in configs.items():  # first runs of every session
        views_for_image(images[0], det, iso, vs)
    for _ in range(args.rounds):
        for name, (images, det, iso, vs) in configs.items():
            t, c = time.perf_counter(), time.process_time()
            batch = []
            count = 0
            for im in images:
                batch.extend(v.image.convert("RGB") for v in views_for_image(im, det, iso, vs))
                while len(batch) >= 8:
                    embedder.embed_images(batch[:8])
                    count += 8
                    batch = batch[8:]
            if batch:
                embedder.embed_images(batch)
                count += len(batch)
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
            views[name] = count
    out = {}
    for name, (images, *_rest) in configs.items():
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        base = (
            "grocery: embed whole photo"
            if name.startswith("grocery")
            else "fashion: embed whole photo"
        )
        out[name] = {
            "images": len(images),
            "views": views[name],
            "images_per_s": round(len(images) / wall, 2),
            "cpu_s_per_image": round(cpu / len(images), 4),
            "slowdown_wall": round(wall / statistics.median(walls[base]), 2),
            "slowdown_cpu": round(cpu / statistics.median(cpus[base]), 2),
        }
        print(name, json.dumps(out[name]), flush=True)
    import os

    out["_machine"] = {"cores": os.cpu_count(), "load_avg": os.getloadavg(), "rounds": args.rounds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
