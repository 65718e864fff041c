"""Garment cut-out variants on the fashion pairs, from cached masks (bench/garment_masks.py): each
variant's worn-photo cut-outs are embedded (EfficientNet-Lite2) and ranked against the 600 product
shots. Tune on the first 400 garments of pairs.csv, report on the last 200 (held out).

    nice python bench/tune_garments.py DATA/fashion MASKS.npz OUT_DIR tune200|all [variant ...]
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

TUNE = 400


def _embedder():
    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.pipeline.clip import load_embedder

    s = Settings()
    models = wiring.model_store(s)
    return load_embedder(models.spec("efficientnet-lite2"), models.path("efficientnet-lite2"))


def embed(embedder, images: list[Image.Image]) -> np.ndarray:
    out = []
    for i in range(0, len(images), 8):
        out.append(embedder.embed_images([im.convert("RGB") for im in images[i : i + 8]]))
    return np.concatenate(out)


def recall(q: np.ndarray, p: np.ndarray, idx: slice) -> dict[str, float]:
    sims = q[idx] @ p.T
    truth = np.arange(len(p))[idx]
    ranks = (sims > sims[np.arange(len(truth)), truth][:, None]).sum(axis=1)
    return {f"R@{k}": round(float((ranks < k).mean()), 4) for k in (1, 3, 10)}


def main(fashion: Path, masks: Path, out_dir: Path, names: list[str], part: str = "all") -> None:
    """part: `tune200` (the first 200 of the tuning 400: quick comparisons) or `all` (600)."""
    from common import variant

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((fashion / "pairs.csv").open()))
    z = np.load(masks)
    embedder = _embedder()
    pcache = out_dir / "products_lite2.npy"
    if pcache.exists():
        products = np.load(pcache)
    else:
        products = embed(embedder, [Image.open(fashion / r["product_image"]) for r in rows])
        np.save(pcache, products)
    results = (
        json.loads((out_dir / "tune.json").read_text()) if (out_dir / "tune.json").exists() else {}
    )
    for name in names:
        t0 = time.perf_counter()
        cuts = []
        chosen = rows[:200] if part == "tune200" else rows
        for r in chosen:
            image = Image.open(fashion / r["worn_image"]).convert("RGB")
            key = r["garment_id"]
            cuts.append(variant(name, image, z[f"{key}/box"], z[f"{key}/parts"]))
        q = embed(embedder, cuts)
        if part == "tune200":
            res = {"tune200": recall(q, products, slice(0, 200))}
        else:
            np.save(out_dir / f"q_{name}.npy", q)
            res = {
                "tune": recall(q, products, slice(0, TUNE)),
                "held_out": recall(q, products, slice(TUNE, None)),
                "all": recall(q, products, slice(None)),
            }
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results[f"{name}@{part}"] = res
        print(name, json.dumps(res), flush=True)
        sheet = Image.new("RGB", (8 * 96, 3 * 128), "white")
        for i in range(24):
            im = cuts[(TUNE if part == "all" else 0) + i * 8].copy()
            im.thumbnail((96, 128))
            sheet.paste(im, ((i % 8) * 96, (i // 8) * 128))
        sheet.save(out_dir / f"sheet_{name}_{part}.png")
        (out_dir / "tune.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    part = sys.argv[4]
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[5:], part)
