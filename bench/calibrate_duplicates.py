"""Calibrate the near-duplicate threshold on a labelled set made of catalogue photos and edited
copies of them.

    .venv/bin/python bench/calibrate_duplicates.py --data ../shared/data/grocery --photos 300

Each sampled grocery photo (iconic and train photos, several per product, so different photos of
the same product are hard negatives) gets four edited copies: resized to half, recompressed at JPEG
quality 30, centre-cropped to 85 %, mirrored. Every photo and copy is indexed as its own item with
the real engine; a pair is a true duplicate when both come from the same original. Precision and
recall over all pairs are reported for a sweep of thresholds, and the threshold with the best F1.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lookalike.config import Settings
from lookalike.engine.core import Engine
from lookalike.store.base import where
from lookalike.types import Item

EDITS = {
    "half": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    "q30": lambda im: im,  # saved at quality 30 below
    "crop85": lambda im: im.crop(
        (
            round(im.width * 0.075),
            round(im.height * 0.075),
            round(im.width * 0.925),
            round(im.height * 0.925),
        )
    ),
    "flip": ImageOps.mirror,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("duplicates-calibration.json"))
    args = parser.parse_args()

    lines = (args.data / "train.txt").read_text().splitlines()
    rng = random.Random(args.seed)
    originals = [args.data / line.split(",")[0].strip() for line in rng.sample(lines, args.photos)]
    work = Path(tempfile.mkdtemp(prefix="lookalike-dups-"))
    items: list[Item] = []
    source_of: dict[str, int] = {}
    for n, path in enumerate(originals):
        image = Image.open(path).convert("RGB")
        items.append(Item(f"o{n}", (str(path),)))
        source_of[f"o{n}"] = n
        for name, edit in EDITS.items():
            dest = work / f"{n}_{name}.jpg"
            edit(image).save(dest, quality=30 if name == "q30" else 90)
            items.append(Item(f"o{n}_{name}", (str(dest),)))
            source_of[f"o{n}_{name}"] = n

    settings = Settings(index=work / "index")
    with Engine(settings.index, settings=settings) as engine:
        engine.index(items)
        recs = list(
            engine.store.scroll(where("kind", "view"), fields=["item_id"], with_vectors=True)
        )
    ids = [r.payload["item_id"] for r in recs]
    vectors = np.stack([r.vectors["image"] for r in recs])
    sims = vectors @ vectors.T
    src = np.array([source_of[i] for i in ids])
    upper = np.triu_indices(len(ids), k=1)
    scores, same = sims[upper], (src[:, None] == src[None, :])[upper]
    sweep = []
    for t in np.arange(0.80, 0.995, 0.01):
        predicted = scores >= t
        tp = int((predicted & same).sum())
        precision = tp / max(1, int(predicted.sum()))
        recall = tp / int(same.sum())
        f1 = 2 * precision * recall / max(1e-9, precision + recall)
        sweep.append(
            {"threshold": round(float(t), 2), "precision": precision, "recall": recall, "f1": f1}
        )
    best = max(sweep, key=lambda r: r["f1"])
    per_edit = {}
    for name in EDITS:
        idx = [ids.index(f"o{n}_{name}") for n in range(len(originals))]
        orig = [ids.index(f"o{n}") for n in range(len(originals))]
        per_edit[name] = float(np.median(sims[orig, idx]))
    hardest_negative = float(
        np.max(np.where(same | np.eye(len(ids), dtype=bool)[upper], -1, scores))
    )
    result = {
        "photos": len(originals),
        "copies": len(originals) * len(EDITS),
        "positive_pairs": int(same.sum()),
        "negative_pairs": int((~same).sum()),
        "median_similarity_to_original": per_edit,
        "hardest_negative": hardest_negative,
        "best": best,
        "sweep": sweep,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "sweep"}, indent=2))
    for row in sweep:
        print(
            f"{row['threshold']:.2f}  P {row['precision']:.3f}  R {row['recall']:.3f}  F1 {row['f1']:.3f}"
        )


if __name__ == "__main__":
    main()
