"""Frozen (ImageNet) GeM vectors of the packed photos (bench/train_prep.py) for one network, in
the engine's preprocessing: the ensemble's second half (Lite1 on Lite2's 260 px input) for the
trained-Lite2 + frozen-Lite1 ensemble in bench/train_post.py.

    nice python bench/train_frozen_vectors.py --data PACKED --weights lite1.pt \
        --variant efficientnet-lite1 --out lite1_frozen.npz

Output: `grocery_files` / `grocery` (every grocery.csv row, in order) and `fashion_files` /
`fashion` (product then worn view of every fashion.csv row, in order), float16 (N, 1280).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    import torch
    from common import engine_view, load_net, make_modules

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--variant", default="efficientnet-lite1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    front_cls, tail_cls = make_modules(torch)
    net = load_net(args.weights, args.variant)
    full = torch.nn.Sequential(front_cls(net, 0), tail_cls(net, 0, 0, 0, False)).eval()
    out: dict[str, np.ndarray] = {}
    lists = {}
    if (args.data / "grocery.csv").exists():
        rows = list(csv.DictReader((args.data / "grocery.csv").read_text().splitlines()))
        lists["grocery"] = [args.data / "grocery" / r["file"] for r in rows]
    if (args.data / "fashion.csv").exists():
        rows = list(csv.DictReader((args.data / "fashion.csv").read_text().splitlines()))
        folder = args.data / "fashion_views"
        lists["fashion"] = [folder / r["product_view"] for r in rows] + [
            folder / r["worn_view"] for r in rows
        ]
    for key, paths in lists.items():
        vecs = []
        for i in range(0, len(paths), 32):
            batch = np.stack([engine_view(Image.open(p).convert("RGB")) for p in paths[i : i + 32]])
            x = torch.as_tensor(batch).permute(0, 3, 1, 2).float()
            with torch.no_grad():
                vecs.append(full((x - 127.0) / 128.0).numpy().astype(np.float16))
            print(f"{key} {i + len(batch)}/{len(paths)}", flush=True)
        out[key] = np.concatenate(vecs)
        out[f"{key}_files"] = np.array([p.name for p in paths])
    np.savez_compressed(args.out, **out)


if __name__ == "__main__":
    main()
