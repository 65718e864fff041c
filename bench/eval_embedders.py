"""Compare embedders and ensembles of them on the grocery photos, in the learned-projection space.

    export LOOKALIKE_MODELS_MIRROR=../shared/models LOOKALIKE_CACHE_DIR=$PWD/.cache/lookalike
    P=.venv/bin/python; D=../shared/data/grocery; C=/work/cache/embedders
    $P bench/eval_embedders.py features --data $D --cache $C \
        efficientnet-lite2 efficientnet-lite1 efficientnet-lite0          # torch, ~4 min each
    $P bench/eval_embedders.py eval --data $D --cache $C efficientnet-lite2 \
        efficientnet-lite2+efficientnet-lite1 efficientnet-lite2+efficientnet-lite0 ...

`features` computes, with PyTorch and each network's own input size (Lite0 224, Lite1 240, Lite2
260 px; the engine's centre crop and normalisation), the GeM vectors of the catalogue photos
(iconic + train), the val photos and the val photos' 0.8 centre crops (the engine's `crops` TTA),
cached per network as `<cache>/<variant>.npz`.

`eval` scores each combination (networks joined by `+`: their L2-normalised vectors side by side,
as the `efficientnet-lite2+lite1` export does) three ways, centroid mode: plain; with the learned
projection (`lookalike.learn.tuning.fit_projection`, the same function and held-out choice as
`lookalike tune`: parameters chosen on 20 % of the catalogue photos, never on val); projection +
TTA crops. It prints the held-out score the choice saw (catalogue photos only) next to the val
figures: choosing among combinations by the held-out column uses no val photo.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from common import Grocery, load_grocery, load_image


def features(variant: str, g: Grocery, path: Path) -> None:
    """GeM vectors of catalogue photos, val photos and val centre crops, saved to `path`."""
    import dataclasses

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec
    from lookalike.pipeline.embed import to_tensor, tta_images

    s = Settings()
    store = wiring.model_store(s)
    weights = store.export_input(variant, "weights")
    net = EfficientNet.from_pretrained(variant, weights_path=str(weights)).eval()
    pp = get_spec(variant).preprocess
    assert pp is not None
    pp = dataclasses.replace(pp, size=EfficientNet.get_image_size(variant))

    def run(images: Sequence[str], crop: bool) -> np.ndarray:
        out = []
        for start in range(0, len(images), 8):
            photos = [load_image(p) for p in images[start : start + 8]]
            if crop:
                photos = [tta_images(p, "crops", 0.8)[1] for p in photos]
            with torch.no_grad():
                fmap = net.extract_features(torch.from_numpy(to_tensor(photos, pp)))
                out.append(fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3).numpy())
            print(f"{variant} {'crops' if crop else 'photos'} {start + len(photos)}", flush=True)
        return np.concatenate(out)

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        cat=run(g.cat_images, False),
        query=run(g.query_images, False),
        query_crop=run(g.query_images, True),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _joined(parts: Sequence[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return _unit(np.concatenate([_unit(p[key].astype(np.float64)) for p in parts], axis=1))


def _centroid_metrics(
    cat: np.ndarray, cat_items: np.ndarray, query: np.ndarray, q_items: np.ndarray
) -> dict[str, float]:
    items = sorted(set(cat_items.tolist()))
    centroids = _unit(np.stack([cat[cat_items == i].mean(0) for i in items]))
    order = np.argsort(-(query @ centroids.T), axis=1)
    truth = np.array([items.index(i) for i in q_items.tolist()])
    ranks = np.argmax(order == truth[:, None], axis=1)
    return {
        "recall@1": float((ranks < 1).mean()),
        "recall@3": float((ranks < 3).mean()),
        "recall@10": float((ranks < 10).mean()),
        "map": float((1.0 / (ranks + 1)).mean()),
    }


def evaluate_combination(names: Sequence[str], g: Grocery, cache: Path) -> dict[str, object]:
    """Plain / projection / projection + TTA crops figures of one combination of networks."""
    from lookalike.learn.tuning import fit_projection

    parts = []
    for name in names:
        with np.load(cache / f"{name}.npz") as data:
            parts.append({k: data[k] for k in data.files})
    cat, query = _joined(parts, "cat"), _joined(parts, "query")
    crop = _joined(parts, "query_crop")
    cat_items, q_items = np.array(g.cat_items), np.array(g.query_items)
    result = fit_projection(cat.astype(np.float32), list(g.cat_items))
    p = result.projection
    projected = p.apply(cat.astype(np.float32))
    return {
        "networks": "+".join(names),
        "dim_in": int(cat.shape[1]),
        "chosen": {"dim": result.chosen.dim, "lam": result.chosen.lam},
        "held_out_r1": result.chosen.score,
        "plain": _centroid_metrics(cat, cat_items, query, q_items),
        "projection": _centroid_metrics(
            projected, cat_items, p.apply(query.astype(np.float32)), q_items
        ),
        # The engine's TTA: the normalised mean of the photo's and its crop's raw vectors, projected.
        "projection_tta": _centroid_metrics(
            projected, cat_items, p.apply(_unit(query + crop).astype(np.float32)), q_items
        ),
    }


def markdown(rows: Sequence[dict[str, object]]) -> str:
    head = (
        "| networks | held-out R@1 (catalogue) | chosen dim, lam | plain R@1 / R@3 "
        "| projection R@1 / R@3 | projection + TTA R@1 / R@3 / R@10 / mAP |\n|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        pl, pr, tt = r["plain"], r["projection"], r["projection_tta"]
        ch = r["chosen"]
        lines.append(
            f"| {r['networks']} | {r['held_out_r1']:.3f} | {ch['dim']}, {ch['lam']:g} "  # type: ignore[index]
            f"| {pl['recall@1']:.3f} / {pl['recall@3']:.3f} "  # type: ignore[index]
            f"| {pr['recall@1']:.3f} / {pr['recall@3']:.3f} "  # type: ignore[index]
            f"| {tt['recall@1']:.3f} / {tt['recall@3']:.3f} / {tt['recall@10']:.3f} / "  # type: ignore[index]
            f"{tt['map']:.3f} |"  # type: ignore[index]
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["features", "eval"])
    parser.add_argument("--data", type=Path, required=True, help="grocery data folder")
    parser.add_argument("--cache", type=Path, required=True, help="folder of per-network npz")
    parser.add_argument("--json", type=Path, help="write the eval figures here")
    parser.add_argument("names", nargs="+", help="networks (features) or combinations (eval)")
    args = parser.parse_args(argv)
    g = load_grocery(args.data)
    if args.command == "features":
        for variant in args.names:
            path = args.cache / f"{variant}.npz"
            if not path.exists():
                features(variant, g, path)
        return
    rows = []
    for combination in args.names:
        rows.append(evaluate_combination(combination.split("+"), g, args.cache))
        print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
