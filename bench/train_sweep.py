"""Research sweep for `lookalike tune --train` (issue 16): which layers, objective, LR and length
fine-tune EfficientNet-Lite2 best on the shop's own photos, with the frozen front's activations
cached (K augmented views per photo computed once) so that training fits a 2-core CPU.

    # pack the photos once (bench/train_prep.py), then e.g. a small CPU smoke run:
    cd /work/wt/NAME && source /work/wt/env.sh
    nice python bench/train_sweep.py --data /work/main/.devcarry/data \
        --weights /work/main/.cache/lookalike/efficientnet-lite2/efficientnet-lite2-9656183e.pth \
        --dataset grocery --configs smoke --limit 12 --views 2 --out /tmp/sweep
    # the GPU sweep (run tool; .devcarry holds data, fp16 weights and the model code):
    python3 .devcarry/train_sweep.py --data .devcarry/data --weights .devcarry/w/lite2.pt \
        --dataset grocery --configs broad --views 8 --workers 4 --out $OUT

What it does, per data set:
1. Catalogue photos: grocery = iconic + train/ (items = products); fashion = the garments'
   product shots (every garment, an item) plus the worn photos of the fold's fit garments
   (pairs: `--fold`, split by garment as bench/eval_tune.py `garment_folds`, seed 0).
   `--fashion-views engine` uses the engine's own garment views (bench/train_prep.py --views).
2. Held-out draw of the catalogue itself for early stopping (never the query set): grocery,
   15 % of each item's train photos; fashion, 20 % of the fit garments' worn photos. These are
   not trained on; each epoch they search the rest of the catalogue and their R@1 picks the epoch.
3. K views per catalogue photo: view 0 is the engine's preprocessing (shorter side to 297 px
   bicubic, centre 260 px, (x - 127) / 128), views 1.. are augmented (random resized crop, flip,
   colour jitter, blur, perspective, erasing) in pixel space; all run once through the frozen front
   (stem + blocks[:CACHE]) and are cached in float16. Training samples a cached view per photo,
   with optional feature-space augmentation (horizontal flip and a random 15/17 crop of the map).
4. Trains blocks[start:] + head conv (+ optional linear embedding head) with GeM (p=3) + L2, BN
   statistics frozen, one of: proxy-anchor, sub-centre ArcFace, SupCon (InfoNCE over all
   positives of a P x 2 batch). Proxies / class centres start at the items' frozen centroids.
5. Reports per epoch: held-out R@1 (catalogue draw) and the query R@1 (grocery val photos against
   the whole catalogue, views = best photo per item, and centroid; fashion: the other half's worn
   photos against all 600 product shots and against the held-out half's 300 only, as docs/quality.md).
   Query figures are reported, never used for a choice.

Writes OUT/<dataset>_results.json (all configs, per-epoch curves, timings) and, for configs marked
`save`, OUT/<dataset>_<name>.npz with the catalogue / query vectors at the chosen epoch (for the
projection-on-top and ensemble checks done offline: bench/train_post.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from common import SIDE, SIZE, engine_view, garment_folds, load_net, make_modules
from PIL import Image, ImageEnhance, ImageFilter

CACHE = 11  # blocks[:11] frozen and cached: 88 x 17 x 17 at 260 px (stride 16), 51 kB in fp16

# ---------------------------------------------------------------------------------------------
# Photos and views
# ---------------------------------------------------------------------------------------------


def augmented_view(image: Image.Image, rng: random.Random) -> np.ndarray:
    """One strongly augmented view (PIL + numpy only: the product has torch but no torchvision)."""
    w, h = image.size
    scale = SIDE / min(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    area = w * h
    for _ in range(10):  # random resized crop, scale (0.3, 1), ratio (3/4, 4/3)
        target = area * rng.uniform(0.3, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    if rng.random() < 0.3:  # mild perspective
        d = 0.12 * min(cw, ch)
        quad = [
            x0 + rng.uniform(0, d), y0 + rng.uniform(0, d),
            x0 + rng.uniform(0, d), y0 + ch - rng.uniform(0, d),
            x0 + cw - rng.uniform(0, d), y0 + ch - rng.uniform(0, d),
            x0 + cw - rng.uniform(0, d), y0 + rng.uniform(0, d),
        ]  # fmt: skip
        view = image.transform((SIZE, SIZE), Image.QUAD, quad, Image.BICUBIC)
    else:
        view = image.resize((SIZE, SIZE), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        view = view.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.8:  # colour jitter, random order
        ops = [
            (ImageEnhance.Brightness, 0.4),
            (ImageEnhance.Contrast, 0.4),
            (ImageEnhance.Color, 0.4),
        ]
        rng.shuffle(ops)
        for op, strength in ops:
            view = op(view).enhance(rng.uniform(1 - strength, 1 + strength))
    if rng.random() < 0.2:
        view = view.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 1.5)))
    arr = np.array(view, dtype=np.uint8)
    if rng.random() < 0.25:  # random erasing (grey = 0 after normalisation)
        ea = SIZE * SIZE * rng.uniform(0.02, 0.2)
        er = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        eh, ew = min(SIZE, round(math.sqrt(ea * er))), min(SIZE, round(math.sqrt(ea / er)))
        ey, ex = rng.randint(0, SIZE - eh), rng.randint(0, SIZE - ew)
        arr[ey : ey + eh, ex : ex + ew] = 127
    return arr


def tta_views(path: str) -> np.ndarray:
    """The engine's query TTA (lookalike/pipeline/embed.py tta_images, crop 0.8): the photo, its
    centre crop, and both mirrored, each through the engine's preprocessing; (4, 260, 260, 3)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    dx, dy = round(w * 0.1), round(h * 0.1)
    crop = image.crop((dx, dy, w - dx, h - dy))
    flip = Image.Transpose.FLIP_LEFT_RIGHT
    return np.stack(
        [engine_view(i) for i in (image, crop, image.transpose(flip), crop.transpose(flip))]
    )


def _views_of(args: tuple[str, int, int]) -> np.ndarray:
    path, k, seed = args
    if k < 0:
        return tta_views(path)
    image = Image.open(path).convert("RGB")
    rng = random.Random(seed)
    return np.stack([engine_view(image)] + [augmented_view(image, rng) for _ in range(k - 1)])


def views_of(paths: list[str], k: int, seed: int, procs: int) -> np.ndarray:
    """(N, k, 260, 260, 3) uint8: view 0 as the engine sees the photo, then k - 1 augmented."""
    jobs = [(p, k, seed * 1_000_003 + i) for i, p in enumerate(paths)]
    if procs <= 1:
        return np.stack([_views_of(j) for j in jobs])
    with ProcessPoolExecutor(procs) as pool:
        return np.stack(list(pool.map(_views_of, jobs, chunksize=16)))


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


def grocery_set(data: Path, limit: int, seed: int) -> dict:
    rows = list(csv.DictReader((data / "grocery.csv").read_text().splitlines()))
    if limit:
        keep = sorted({r["item"] for r in rows}, key=int)[:limit]
        rows = [r for r in rows if r["item"] in keep]
    cat = [r for r in rows if r["split"] != "val"]
    val = [r for r in rows if r["split"] == "val"]
    items = np.array([r["item"] for r in cat])
    # Held-out draw: 15 % of each item's train photos (the iconic shot always stays in training).
    rng = np.random.default_rng(seed)
    held = np.zeros(len(cat), dtype=bool)
    for item in sorted(set(items.tolist())):
        rows_i = sorted(
            (i for i, r in enumerate(cat) if r["item"] == item and r["split"] == "train"),
            key=lambda i: cat[i]["source"],
        )
        if len(rows_i) >= 3:
            # A contiguous run of the item's photos (by file name, i.e. by shooting order): random
            # photos would have their near-duplicate neighbours in training, and every config
            # would score ~1.0.
            size = max(1, round(0.15 * len(rows_i)))
            first = int(rng.integers(0, len(rows_i) - size + 1))
            held[rows_i[first : first + size]] = True
    return {
        "cat_paths": [str(data / "grocery" / r["file"]) for r in cat],
        "cat_items": items,
        "held": held,
        "query_paths": [str(data / "grocery" / r["file"]) for r in val],
        "query_items": np.array([r["item"] for r in val]),
        "gallery_extra": None,
        "iconic": np.array([r["split"] == "iconic" for r in cat]),
    }


def fashion_set(data: Path, fold: int, views: str, limit: int, seed: int) -> dict:
    rows = list(csv.DictReader((data / "fashion.csv").read_text().splitlines()))
    if limit:
        rows = rows[: limit * 2]
    fit, rep = garment_folds(len(rows), len(rows) // 2, 0)[fold]
    if views == "engine":
        folder, pk, wk = "fashion_views", "product_view", "worn_view"
    else:
        folder, pk, wk = "fashion", "product", "worn"
    gid = np.array([r["garment"] for r in rows])
    product = [str(data / folder / r[pk]) for r in rows]
    worn = [str(data / folder / r[wk]) for r in rows]
    # Catalogue: every product shot (an item each) + the fit garments' worn photos (pairs).
    cat_paths = product + [worn[i] for i in fit]
    cat_items = np.concatenate([gid, gid[fit]])
    is_worn = np.concatenate([np.zeros(len(rows), bool), np.ones(len(fit), bool)])
    rng = np.random.default_rng(seed)
    held_fit = rng.choice(len(fit), size=max(1, round(0.2 * len(fit))), replace=False)
    held = np.zeros(len(cat_paths), dtype=bool)
    held[len(rows) + held_fit] = True
    return {
        "cat_paths": cat_paths,
        "cat_items": cat_items,
        "held": held,
        "is_worn": is_worn,
        "n_products": len(rows),
        "query_paths": [worn[i] for i in rep],
        "query_items": gid[rep],
        "rep_items": gid[rep],
    }


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def proxy_anchor(torch, emb, labels, proxies, alpha=32.0, delta=0.1):  # type: ignore[no-untyped-def]
    F = torch.nn.functional
    cos = emb @ F.normalize(proxies, dim=1).T
    pos = F.one_hot(labels, proxies.shape[0]).bool()
    with_pos = pos.any(0)
    pos_term = torch.where(pos, torch.exp(-alpha * (cos - delta)), torch.zeros_like(cos)).sum(0)
    neg_term = torch.where(~pos, torch.exp(alpha * (cos + delta)), torch.zeros_like(cos)).sum(0)
    return (
        torch.log1p(pos_term[with_pos]).sum() / with_pos.sum().clamp(min=1)
        + torch.log1p(neg_term).sum() / proxies.shape[0]
    )


def subcentre_arcface(torch, emb, labels, centres, k=3, s=30.0, m=0.2):  # type: ignore[no-untyped-def]
    F = torch.nn.functional
    cos = (emb @ F.normalize(centres, dim=1).T).view(emb.shape[0], -1, k).amax(-1)
    cos = cos.clamp(-1 + 1e-6, 1 - 1e-6)
    target = torch.cos(torch.acos(cos.gather(1, labels[:, None])) + m)
    logits = cos.scatter(1, labels[:, None], target)
    return F.cross_entropy(s * logits, labels)


def supcon(torch, emb, labels, tau=0.1):  # type: ignore[no-untyped-def]
    sim = emb @ emb.T / tau
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = pos.any(1)
    return -(logp * pos).sum(1)[has].div(pos.sum(1)[has]).mean()


# ---------------------------------------------------------------------------------------------
# Retrieval metrics
# ---------------------------------------------------------------------------------------------


def recall(gallery, g_items, queries, q_items, mode="views", ks=(1, 3, 10)) -> dict:  # type: ignore[no-untyped-def]
    """Item-level R@k (best view per item, or centroid), as lookalike.learn.tuning.item_rankings."""
    names, inv = np.unique(g_items, return_inverse=True)
    sims = queries @ gallery.T
    if mode == "views":
        scores = np.full((len(queries), len(names)), -np.inf, dtype=np.float32)
        for j in range(len(names)):
            scores[:, j] = sims[:, inv == j].max(1)
    else:
        cent = np.zeros((len(names), gallery.shape[1]), np.float64)
        np.add.at(cent, inv, gallery)
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
        scores = queries @ cent.T.astype(np.float32)
    truth = np.searchsorted(names, q_items)
    own = scores[np.arange(len(queries)), truth]
    # A NaN vector (a diverged run) must score as a miss, not as rank 0.
    ranks = np.where(np.isnan(own), len(names), (scores > own[:, None]).sum(1))
    return {f"r{k}": round(float((ranks < k).mean()), 4) for k in ks}


# ---------------------------------------------------------------------------------------------
# Sweep
# ---------------------------------------------------------------------------------------------

BASE = {
    "start": 18,  # first trained block (21 = head conv only; 22 = linear head only)
    "loss": "proxy",
    "lr": 3e-4,
    "head_lr_mult": 0.0,  # 0: 100 for proxy-anchor (its paper), 10 for ArcFace
    "epochs": 30,
    "batch": 128,
    "views": 0,  # 0 = all cached views
    "faug": True,
    "head_dim": 0,
    "wd": 1e-4,
    "margin": 0.2,
    "tau": 0.1,
    "alpha": 32.0,
    "save": False,
    "eval_every": 2,
}


def config_sets(name: str) -> list[dict]:
    def c(**kw) -> dict:  # type: ignore[no-untyped-def]
        out = dict(BASE, **kw)
        out["name"] = "-".join(f"{k}{v}" for k, v in kw.items() if k != "save") or "base"
        return out

    if name == "smoke":
        return [
            c(start=20, epochs=2),
            c(start=18, loss="supcon", epochs=2),
            c(start=22, loss="arc", epochs=2),
        ]
    if name == "broad":
        out = []
        for loss in ("proxy", "arc", "supcon"):
            for start in (22, 21, 20, 18, 16):
                out.append(c(loss=loss, start=start))
        for loss in ("proxy", "arc", "supcon"):
            for lr in (1e-4, 1e-3):
                out.append(c(loss=loss, start=18, lr=lr))
        out += [
            c(start=18, faug=False),
            c(start=18, views=2),
            c(start=18, views=4),
            c(start=18, head_dim=512),
        ]
        out += [c(start=15), c(start=18, epochs=60)]
        return out
    if name == "round2g":  # grocery, after `broad`: deeper, faster, fewer views
        return [
            c(start=16, lr=1e-3, save=True),
            c(start=13),
            c(start=11),
            c(start=18, lr=1e-3, save=True),
            c(start=16, epochs=60),
            c(start=18, lr=1e-3, views=4),
            c(start=16, loss="supcon"),
            c(start=13, lr=1e-3),
        ]
    if name == "round2f":  # fashion, after `broad` (run with --override '{"epochs": 60}')
        return [
            c(start=16, lr=1e-3, save=True),
            c(start=13, lr=1e-3),
            c(start=11),
            c(start=18, lr=1e-3, save=True),
            c(start=16, lr=1e-3, loss="arc"),
            c(start=16, lr=1e-3, views=4),
            c(start=16, lr=3e-3),
        ]
    raise SystemExit(f"unknown config set {name}")


def run_config(cfg: dict, ctx: dict) -> dict:
    import torch

    dev = torch.device(ctx["device"])
    torch.manual_seed(ctx["seed"])
    rnd = np.random.default_rng(ctx["seed"])
    _, Tail = make_modules(torch)
    net = load_net(ctx["weights"], ctx["variant"])
    head_dim = cfg["head_dim"] or (1280 if cfg["start"] >= 22 else 0)
    tail = Tail(net, CACHE, min(cfg["start"], 21), head_dim, cfg["start"] <= 21).to(dev)
    tail.eval()  # BN statistics frozen (batches of a few items; ImageNet statistics are good)
    cache = ctx["cache"]  # (N, K, C, H, W) float16 tensor on dev
    qcache = ctx["qcache"]  # (Q, 4, C, H, W): plain, crop, mirror, mirrored crop
    items = ctx["cat_items"]
    held = ctx["held"]
    names, labels_np = np.unique(items, return_inverse=True)
    labels_all = torch.as_tensor(labels_np, device=dev)
    train_rows = np.flatnonzero(~held)
    k_views = min(cfg["views"] or cache.shape[1], cache.shape[1])

    def embed(x, bs=512):  # type: ignore[no-untyped-def]
        out = []
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            for i in range(0, len(x), bs):
                out.append(tail(x[i : i + bs].to(dev).float()).float())
        return torch.cat(out).cpu().numpy()

    def evaluate_all() -> tuple[dict, np.ndarray, np.ndarray]:
        cat = embed(cache[:, 0])
        q4 = embed(qcache.flatten(0, 1)).reshape(qcache.shape[0], 4, -1)
        unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
        m = ctx["score"](cat, q4[:, 0])
        # The engine's query TTA modes: crops (plain + centre crop), flip+crops (all four).
        for mode, sel in (("crops", [0, 1]), ("fc", [0, 1, 2, 3])):
            mm = ctx["score"](cat, unit(q4[:, sel].mean(1)))
            m.update({f"{mode}_{k2}": v for k2, v in mm.items() if not k2.startswith("held")})
        return m, cat, q4

    # Class centres / proxies start at the frozen items' centroids (of the trained photos' view 0).
    base0 = torch.as_tensor(embed(cache[train_rows, 0]), device=dev)
    cent = torch.zeros(len(names), base0.shape[1], device=dev)
    cent.index_add_(0, labels_all[train_rows], base0)
    cent = torch.nn.functional.normalize(cent + 1e-6, dim=1)
    params = [
        {
            "params": [p for p in tail.parameters() if p.requires_grad],
            "lr": cfg["lr"],
            "weight_decay": cfg["wd"],
        }
    ]
    proxies = None
    if cfg["loss"] in ("proxy", "arc"):
        k = 3 if cfg["loss"] == "arc" else 1
        init = cent.repeat_interleave(k, 0) + (
            0.01 * torch.randn(len(names) * k, cent.shape[1], device=dev) if k > 1 else 0
        )
        proxies = torch.nn.Parameter(init)
        mult = cfg["head_lr_mult"] or (100.0 if cfg["loss"] == "proxy" else 10.0)
        params.append({"params": [proxies], "lr": cfg["lr"] * mult, "weight_decay": 0.0})
    opt = torch.optim.AdamW(params)
    steps_per_epoch = max(1, len(train_rows) // cfg["batch"])
    total = steps_per_epoch * cfg["epochs"]
    warm = steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )
    by_item: dict[int, np.ndarray] = {}
    for r in train_rows:
        by_item.setdefault(int(labels_np[r]), []).append(r)  # type: ignore[arg-type]
    item_keys = np.array(sorted(by_item))
    by_item = {k2: np.array(v) for k2, v in by_item.items()}

    def batch_rows() -> np.ndarray:
        """P items x 2 photos (two different photos when the item has them, else the same photo
        twice: two different cached views then make an instance pair)."""
        p = min(cfg["batch"] // 2, len(item_keys))
        chosen = rnd.choice(item_keys, size=p, replace=False)
        rows = []
        for it in chosen:
            pool = by_item[it]
            pick = rnd.choice(pool, size=2, replace=len(pool) < 2)
            rows.extend(pick.tolist())
        return np.array(rows)

    def fetch(rows: np.ndarray):  # type: ignore[no-untyped-def]
        v = rnd.integers(0, k_views, size=len(rows))
        # two copies of one photo get different views
        for i in range(1, len(rows), 2):
            if rows[i] == rows[i - 1] and k_views > 1:
                while v[i] == v[i - 1]:
                    v[i] = rnd.integers(0, k_views)
        x = cache[torch.as_tensor(rows), torch.as_tensor(v)].to(dev).float()
        if cfg["faug"]:
            flip = torch.as_tensor(rnd.random(len(rows)) < 0.5, device=dev)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            hh = x.shape[2]
            c = hh - 2 if hh > 10 else hh - 1
            oy, ox = rnd.integers(0, hh - c + 1, size=2)
            x = x[:, :, oy : oy + c, ox : ox + c]
        return x

    curve = []
    t0 = time.perf_counter()
    train_time = 0.0
    best = None
    metrics, cat_v, q_v = evaluate_all()
    curve.append({"epoch": 0, **metrics})
    best = (metrics["held_r1"], 0, metrics, cat_v, q_v)
    trainable = [p for p in tail.parameters() if p.requires_grad] + (
        [proxies] if proxies is not None else []
    )
    if not trainable:
        return {"cfg": cfg, "curve": curve}
    for epoch in range(1, cfg["epochs"] + 1):
        if cfg["start"] <= 21:
            for b in tail.blocks:
                b.train(False)
        te = time.perf_counter()
        losses = []
        for _ in range(steps_per_epoch):
            rows = batch_rows()
            x = fetch(rows)
            y = labels_all[torch.as_tensor(rows, device=dev)]
            with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                emb = tail(x).float()
            if cfg["loss"] == "proxy":
                loss = proxy_anchor(torch, emb, y, proxies, alpha=cfg["alpha"], delta=0.1)
            elif cfg["loss"] == "arc":
                loss = subcentre_arcface(torch, emb, y, proxies, m=cfg["margin"])
            else:
                loss = supcon(torch, emb, y, tau=cfg["tau"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_time += time.perf_counter() - te
        if epoch % cfg["eval_every"] and epoch != cfg["epochs"]:
            continue
        metrics, cat_v, q_v = evaluate_all()
        curve.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **metrics})
        if metrics["held_r1"] > best[0] or (
            metrics["held_r1"] == best[0] and metrics.get("held_r3", 0) >= best[2].get("held_r3", 0)
        ):
            best = (metrics["held_r1"], epoch, metrics, cat_v, q_v)
    out = {
        "cfg": cfg,
        "curve": curve,
        "chosen_epoch": best[1],
        "at_chosen": best[2],
        "final": curve[-1],
        "train_seconds": round(train_time, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "samples_per_epoch": steps_per_epoch * cfg["batch"],
    }
    out["_vectors"] = (best[3].astype(np.float16), best[4].astype(np.float16))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--variant", default="efficientnet-lite2")
    parser.add_argument("--dataset", choices=["grocery", "fashion"], required=True)
    parser.add_argument("--fashion-views", choices=["whole", "engine"], default="engine")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument(
        "--configs", default="broad", help="a named set, or a JSON list of overrides"
    )
    parser.add_argument("--views", type=int, default=8, help="cached views per catalogue photo")
    parser.add_argument("--limit", type=int, default=0, help="first N items only (smoke runs)")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tag", default="")
    parser.add_argument("--budget-s", type=float, default=1e9, help="stop starting configs after")
    parser.add_argument("--override", default="{}", help="JSON merged into every config")
    parser.add_argument("--extra-weights", type=Path, help="Lite1 weights: frozen vectors saved")
    parser.add_argument("--save-top", type=int, default=2, help="configs whose vectors are saved")
    parser.add_argument("--save-split", action="store_true", help="one npz per saved config")
    args = parser.parse_args()

    import torch

    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(
        args.device if (args.device == "cpu" or torch.cuda.is_available()) else "cpu"
    )
    if args.dataset == "grocery":
        ds = grocery_set(args.data, args.limit, args.seed)
    else:
        ds = fashion_set(args.data, args.fold, args.fashion_views, args.limit, args.seed)
    tag = args.tag or f"{args.dataset}" + (
        f"_{args.fashion_views}_f{args.fold}" if args.dataset == "fashion" else ""
    )
    timings: dict[str, float] = {}

    t = time.perf_counter()
    cat_views = views_of(ds["cat_paths"], args.views, args.seed, args.procs)
    q_tta = views_of(ds["query_paths"], -1, args.seed, args.procs)  # (Q, 4, ...): TTA views
    q_views = q_tta[:, 0]
    timings["decode_augment_s"] = time.perf_counter() - t

    Front, _ = make_modules(torch)
    net = load_net(args.weights, args.variant)
    front = Front(net, CACHE).to(dev).eval()

    def run_front(arr: np.ndarray) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(arr), 256):
                x = torch.as_tensor(arr[i : i + 256]).to(dev).permute(0, 3, 1, 2).float()
                out.append(front((x - 127.0) / 128.0).half())
        return torch.cat(out)

    t = time.perf_counter()
    n, k = cat_views.shape[:2]
    flat = run_front(cat_views.reshape(n * k, SIZE, SIZE, 3))
    cache = flat.view(n, k, *flat.shape[1:])
    qflat = run_front(q_tta.reshape(-1, SIZE, SIZE, 3))
    qcache = qflat.view(len(q_tta), 4, *qflat.shape[1:])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    timings["front_s"] = time.perf_counter() - t
    timings["front_images"] = n * k + 4 * len(q_views)
    timings["cache_mb"] = cache.numel() * 2 / 1e6
    cat_views0 = cat_views[:, 0].copy()
    del cat_views, flat

    items, held = ds["cat_items"], ds["held"]
    if args.dataset == "grocery":

        def score(cat: np.ndarray, q: np.ndarray) -> dict:
            fit = ~held
            h = recall(cat[fit], items[fit], cat[held], items[held])
            v = recall(cat, items, q, ds["query_items"])
            c = recall(cat, items, q, ds["query_items"], mode="centroid")
            return {
                "held_r1": h["r1"],
                "held_r3": h["r3"],
                "val_r1": v["r1"],
                "val_r3": v["r3"],
                "val_r10": v["r10"],
                "val_cent_r1": c["r1"],
            }

    else:
        npr = ds["n_products"]
        rep = np.isin(items[:npr], ds["rep_items"])

        def score(cat: np.ndarray, q: np.ndarray) -> dict:
            prod = cat[:npr]
            h = recall(prod, items[:npr], cat[held], items[held])
            a = recall(prod, items[:npr], q, ds["query_items"])
            r = recall(prod[rep], items[:npr][rep], q, ds["query_items"])
            return {
                "held_r1": h["r1"],
                "held_r3": h["r3"],
                "q600_r1": a["r1"],
                "q600_r3": a["r3"],
                "q600_r10": a["r10"],
                "q300_r1": r["r1"],
                "q300_r10": r["r10"],
            }

    ctx = {
        "device": str(dev), "seed": args.seed, "weights": args.weights, "variant": args.variant,
        "cache": cache, "qcache": qcache, "cat_items": items, "held": held,
        "query_items": ds["query_items"], "score": score, "out": str(args.out), "tag": tag,
    }  # fmt: skip
    if args.configs.startswith("["):
        cfgs = []
        for over in json.loads(args.configs):
            c = dict(BASE, **over)
            c.setdefault(
                "name", "-".join(f"{a}{b}" for a, b in over.items() if a not in ("save", "name"))
            )
            cfgs.append(c)
    else:
        cfgs = config_sets(args.configs)
    for c in cfgs:
        c.update(json.loads(args.override))
    extra = {}
    if args.extra_weights is not None:  # the ensemble's Lite1: frozen, on the same 260 px input
        t = time.perf_counter()
        Front1, Tail1 = make_modules(torch)
        net1 = load_net(args.extra_weights, "efficientnet-lite1")
        full1 = torch.nn.Sequential(Front1(net1, 0), Tail1(net1, 0, 0, 0, False)).to(dev).eval()
        for key, arr in (("lite1_cat", cat_views0), ("lite1_query", q_views)):
            vs = []
            with torch.no_grad():
                for i in range(0, len(arr), 256):
                    x = torch.as_tensor(arr[i : i + 256]).to(dev).permute(0, 3, 1, 2).float()
                    vs.append(full1((x - 127.0) / 128.0).cpu())
            extra[key] = torch.cat(vs).numpy().astype(np.float16)
        timings["lite1_s"] = time.perf_counter() - t
    results = []
    vectors: dict = {}
    for cfg in cfgs:
        if time.perf_counter() - t_start > args.budget_s:
            print(f"budget: skipped {cfg['name']}", flush=True)
            continue
        r = run_config(cfg, ctx)
        results.append(r)
        vectors[cfg["name"]] = r.pop("_vectors", None)
        ch = r.get("at_chosen", r["curve"][0])
        keys = [k2 for k2 in ch if k2 != "epoch"]
        print(
            f"{tag} {cfg['name']:<28} ep*={r.get('chosen_epoch', 0):>2} "
            + " ".join(f"{k2}={ch[k2]}" for k2 in keys)
            + " | final "
            + " ".join(f"{k2}={r['curve'][-1][k2]}" for k2 in keys)
            + f" | {r.get('train_seconds', 0)} s",
            flush=True,
        )
        (args.out / f"{tag}_results.json").write_text(
            json.dumps(
                {"timings": timings, "n_cat": int(n), "n_query": len(q_views), "results": results},
                default=float,
            )
        )
    print(json.dumps(timings), flush=True)
    # The configs chosen by the catalogue's held-out draw (never by the queries) keep their vectors.
    ranked = sorted(
        (r for r in results if "at_chosen" in r),
        key=lambda r: (r["at_chosen"]["held_r1"], r["at_chosen"]["held_r3"]),
        reverse=True,
    )
    keep = {r["cfg"]["name"]: vectors[r["cfg"]["name"]] for r in ranked[: args.save_top]}
    for r in results:
        if r["cfg"].get("save"):
            keep[r["cfg"]["name"]] = vectors[r["cfg"]["name"]]
    arrays = dict({"cat_items": items, "held": held, "query_items": ds["query_items"]}, **extra)
    if args.save_split:
        np.savez_compressed(args.out / f"{tag}_base.npz", **arrays)
        for i, (name, (c, q)) in enumerate(keep.items()):
            np.savez_compressed(args.out / f"{tag}_v{i}.npz", name=name, cat=c, query=q)
    else:
        for i, (name, (c, q)) in enumerate(keep.items()):
            arrays[f"cat_{i}"], arrays[f"query_{i}"], arrays[f"name_{i}"] = c, q, name
        np.savez_compressed(args.out / f"{tag}_vectors.npz", **arrays)


if __name__ == "__main__":
    sys.exit(main())
