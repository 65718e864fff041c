"""Offline checks on the vectors bench/train_sweep.py saves: does the linear projection
(lookalike.learn.tuning fit_projection / fit_cross_domain) still help on top of the trained network, and
does the trained Lite2 + frozen Lite1 ensemble (bench/train_frozen_vectors.py) help?

    python bench/train_post.py fashion RUN_DIR/fashion_engine_f0_vectors.npz 0 lite1_fashion.npz
    python bench/train_post.py grocery RUN_DIR/grocery_base.npz RUN_DIR/grocery_v0.npz lite1_grocery.npz

Projections are fitted on catalogue vectors only (grocery: every catalogue photo, parameters chosen
on its held-out draws; fashion: the fit half's (worn, product) pairs), as `lookalike tune` does.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from lookalike.evaluation.metrics import evaluate
from lookalike.learn.tuning import fit_cross_domain, fit_projection, item_rankings


def unit(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def r1(gallery, g_items, queries, q_items, mode="views", proj=None) -> float:  # type: ignore[no-untyped-def]
    if proj is not None:
        gallery, queries = proj.apply(gallery), proj.apply(queries)
    ranked = item_rankings(gallery, g_items, queries, mode=mode)
    return round(evaluate(ranked, [str(i) for i in q_items])["recall@1"], 4)


def fashion(npz: str, fold: int, lite1: str | None) -> None:
    z = np.load(npz, allow_pickle=True)
    items, q_items = z["cat_items"].astype(str), z["query_items"].astype(str)
    n = int((np.arange(len(items)) < len(set(items.tolist()))).sum())  # products first
    order = np.random.default_rng(0).permutation(n)
    fit, rep = (order[:300], order[300:]) if fold == 0 else (order[300:], order[:300])
    l1 = np.load(lite1) if lite1 else None
    for i in range(4):
        if f"cat_{i}" not in z.files:
            break
        cat, q = unit(z[f"cat_{i}"]), unit(z[f"query_{i}"][:, 0])
        spaces = {"trained": (cat, q)}
        if l1 is not None:
            lp, lw = unit(l1["fashion"][:n]), unit(l1["fashion"][n:])
            l1cat = np.concatenate([lp, lw[fit]])
            spaces["trained+lite1"] = (
                np.concatenate([cat, l1cat], 1) / np.sqrt(2),
                np.concatenate([q, lw[rep]], 1) / np.sqrt(2),
            )
        for name, (c, qq) in spaces.items():
            prod, worn_fit = c[:n], c[n:]
            repmask = np.isin(items[:n], q_items)
            t = time.perf_counter()
            cross = fit_cross_domain(worn_fit, prod[fit], groups=items[n:], seed=0)
            row = {
                "config": str(z[f"name_{i}"]), "space": name, "fold": fold,
                "q600": r1(prod, items[:n], qq, q_items),
                "q300": r1(prod[repmask], items[:n][repmask], qq, q_items),
                "q600+cross": r1(prod, items[:n], qq, q_items, proj=cross.projection),
                "q300+cross": r1(prod[repmask], items[:n][repmask], qq, q_items, proj=cross.projection),
                "chosen": [cross.chosen.dim, cross.chosen.lam],
                "fit_s": round(time.perf_counter() - t, 1),
            }  # fmt: skip
            print(json.dumps(row), flush=True)


def grocery(base: str, vec: str, lite1: str | None, splits: int) -> None:
    b, z = np.load(base, allow_pickle=True), np.load(vec, allow_pickle=True)
    items, q_items = b["cat_items"].astype(str), b["query_items"].astype(str)
    cat, q = unit(z["cat"]), unit(z["query"][:, 0])
    spaces = {"trained": (cat, q)}
    if lite1:
        l1 = np.load(lite1)["grocery"]
        lc, lq = unit(l1[: len(cat)]), unit(l1[len(cat) :])
        spaces["trained+lite1"] = (
            np.concatenate([cat, lc], 1) / np.sqrt(2),
            np.concatenate([q, lq], 1) / np.sqrt(2),
        )
    for name, (c, qq) in spaces.items():
        t = time.perf_counter()
        res = fit_projection(c, items, seed=0, splits=splits)
        row = {
            "config": str(z["name"]), "space": name,
            "views": r1(c, items, qq, q_items), "centroid": r1(c, items, qq, q_items, "centroid"),
            "views+proj": r1(c, items, qq, q_items, proj=res.projection),
            "centroid+proj": r1(c, items, qq, q_items, "centroid", res.projection),
            "chosen": [res.chosen.dim, res.chosen.lam], "fit_s": round(time.perf_counter() - t, 1),
        }  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "fashion":
        fashion(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        splits = int(sys.argv[5]) if len(sys.argv) > 5 else 5
        grocery(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None, splits)
