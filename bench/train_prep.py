"""Pack the photos for the training sweep (bench/train_sweep.py) into one small folder.

    cd /work/wt/NAME && source /work/wt/env.sh
    nice python bench/train_prep.py --data /work/shared/data --out /work/main/.devcarry/data

Writes `OUT/grocery/` (every catalogue photo, iconic + train/, and every val photo, resized with
the engine's own resampling to the side the engine's centre crop starts from: 260 / 0.875 = 297
px, JPEG q90, so the engine's preprocessing of the packed photo is its preprocessing of the
original up to JPEG noise), `OUT/grocery.csv` (file, item, split: iconic / train / val),
`OUT/fashion/` (the 1,200 fashion photos as they are, 192x256) and, with `--views`, the engine's
own garment view of each fashion photo (`Engine.query_views` with detect, isolate=garment,
garment=upper, labels=fashion: what `lookalike index --detect --isolate garment` embeds), as
`OUT/fashion_views/` + `OUT/fashion.csv` (garment, product, worn, product_view, worn_view, labels).
Small enough to travel to the accelerator machine (the run tool's 64 MiB).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from PIL import Image

SIDE = 297


def pack_grocery(data: Path, out: Path) -> None:
    root = data / "grocery"
    rows: list[tuple[str, str, str]] = []
    with open(root / "classes.csv", newline="") as fh:
        for row in csv.reader(fh):
            if row[1].strip().isdigit():
                rows.append((row[4].strip().lstrip("/"), row[1].strip(), "iconic"))
    for split in ("train", "val"):
        for line in (root / f"{split}.txt").read_text().splitlines():
            path, item, _ = (p.strip() for p in line.split(","))
            rows.append((path, item, split))
    dest = out / "grocery"
    dest.mkdir(parents=True, exist_ok=True)
    table = []
    for n, (path, item, split) in enumerate(rows):
        name = f"{n:05d}.jpg"
        image = Image.open(root / path).convert("RGB")
        w, h = image.size
        scale = SIDE / min(w, h)
        image = image.resize(
            (max(SIDE, round(w * scale)), max(SIDE, round(h * scale))), Image.Resampling.BICUBIC
        )
        image.save(dest / name, quality=90)
        table.append((name, item, split, path))
    with open(out / "grocery.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "item", "split", "source"), *table])
    print(f"grocery: {len(table)} photos")


def pack_fashion(data: Path, out: Path, views: bool) -> None:
    root = data / "fashion"
    pairs = list(csv.DictReader((root / "pairs.csv").read_text().splitlines()))
    dest = out / "fashion"
    dest.mkdir(parents=True, exist_ok=True)
    for row in pairs:
        for key in ("product_image", "worn_image"):
            Image.open(root / row[key]).save(dest / Path(row[key]).name, quality=95)
    table = [
        [row["garment_id"], Path(row["product_image"]).name, Path(row["worn_image"]).name]
        for row in pairs
    ]
    if views:
        import tempfile

        from lookalike.config import Settings
        from lookalike.engine.core import Engine
        from lookalike.pipeline.decode import load_image

        vdest = out / "fashion_views"
        vdest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                index=Path(tmp) / "index",
                detect=True,
                isolate="garment",
                garment="upper",
                labels="fashion",
            )
            engine = Engine(settings.index, settings=settings)
            started = time.perf_counter()
            for n, (row, entry) in enumerate(zip(pairs, table, strict=True)):
                labels = []
                for key in ("product_image", "worn_image"):
                    view = engine.query_views(load_image(str(root / row[key])).image)[0]
                    name = "v_" + Path(row[key]).stem + ".jpg"
                    view.image.convert("RGB").save(vdest / name, quality=93)
                    entry.append(name)
                    labels.append(view.label)
                entry.append("/".join(labels))
                if n % 50 == 0:
                    print(
                        f"views {n}/{len(pairs)} {time.perf_counter() - started:.0f} s", flush=True
                    )
    header = ["garment", "product", "worn"] + (
        ["product_view", "worn_view", "labels"] if views else []
    )
    with open(out / "fashion.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header, *table])
    print(f"fashion: {len(table)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", action="store_true", help="also the engine's garment views")
    parser.add_argument("--only", choices=["grocery", "fashion"])
    args = parser.parse_args()
    if args.only in (None, "grocery"):
        pack_grocery(args.data, args.out)
    if args.only in (None, "fashion"):
        pack_fashion(args.data, args.out, args.views)


if __name__ == "__main__":
    main()
