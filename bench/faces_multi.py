"""Several portraits at once: best-of (nearest to any portrait) vs the mean descriptor.

    python bench/faces_multi.py --descriptors /tmp/desc.npz --data-dir ../shared/data/faces

Same simulated event as `faces_calibrate.py` (185 photos). Queries: every pair of portraits of a
person with at least 3 photos (137 pairs), both left out of the event; compared with one
portrait (the pair's first) alone. Tiers at the defaults (0.36 / 0.42). Reports mAP, the share
of absent-person queries (the person's photos removed) that return anything, and strangers'
photos in the "maybe you" tier per search.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from common import Event, load_event, search_average_precision

from lookalike.faces.settings import DEFAULT_MAYBE_THRESHOLD, DEFAULT_THRESHOLD
from lookalike.faces.values import split_tiers
from lookalike.pipeline.embed import l2_normalise

ROOT = Path(__file__).resolve().parents[1]


def photo_distances(event: Event, keys: list[str], queries: list[np.ndarray], mode: str):
    qs = np.stack(queries)
    if mode == "mean":
        qs = l2_normalise(qs.mean(axis=0, keepdims=True))
    out = np.full(len(keys), np.inf)
    for n, key in enumerate(keys):
        v = event.vectors.get(key)
        if v is not None and len(v):
            out[n] = float(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (v @ qs.T))).min())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--descriptors", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--event-variants", help="which copies make up the event (default: all)")
    args = parser.parse_args()
    chosen = set(args.event_variants.split(",")) if args.event_variants else None
    event, queries, identity = load_event(args.descriptors, args.data_dir, chosen)
    keys = list(event.people)
    t, tm = DEFAULT_THRESHOLD, DEFAULT_MAYBE_THRESHOLD
    out = {}
    for mode in ("single", "best-of", "mean"):
        aps, absent, strangers, n = [], 0, 0, 0
        for who in sorted(set(identity.values())):
            photos = [p for p in queries if identity[p] == who]
            if len(photos) < 3:
                continue
            for pair in itertools.combinations(photos, 2):
                used = [queries[pair[0]]] if mode == "single" else [queries[p] for p in pair]
                d = photo_distances(event, keys, used, "mean" if mode == "mean" else "best")
                keep = np.array([event.source[k] not in pair for k in keys])
                d = d[keep]
                kept = [k for k, ok in zip(keys, keep, strict=True) if ok]
                rel = np.array([who in event.people[k] for k in kept])
                you, maybe = split_tiers(d, t, tm)
                cut = np.full(len(d), np.inf)
                shown = np.concatenate([you, maybe])
                cut[shown] = d[shown]
                aps.append(search_average_precision(cut, rel, tm))
                strangers += int((~rel[maybe]).sum())
                a_you, a_maybe = split_tiers(d[~rel], t, tm)
                absent += len(a_you) + len(a_maybe) > 0
                n += 1
        out[mode] = {
            "queries": n,
            "map": round(float(np.mean(aps)), 4),
            "absent_any": round(absent / n, 3),
            "maybe_strangers_per_search": round(strangers / n, 2),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
