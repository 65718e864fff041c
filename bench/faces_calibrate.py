"""Choose the two "same person" distances of face search, cross-validated by identity.

    python bench/faces_descriptors.py --data-dir ../shared/data/faces --out /tmp/desc.npz
    python bench/faces_calibrate.py --descriptors /tmp/desc.npz --data-dir ../shared/data/faces
        [--json out.json]

The task: a client gives one portrait and looks through the event photos returned, nearest first.
Simulated event: every labelled deepface photo three times ("photo", and the "small" and "dim"
copies of `faces_descriptors.py`: a 64 px face in JPEG, a 96 px face lit unevenly), plus the two
unlabelled group photos, whose faces were labelled by eye (Angelina Jolie, person01, is in both;
the 7 other faces are people who are in no labelled photo: strangers).

Queries: each labelled photo as it is (its largest face), searched against the event photos of
the identities in play, its own three copies left out. A returned photo is relevant when the
query's person is in it. Per query:
    AP       average precision of the whole list returned ("you" then "maybe you", nearest first;
             a relevant photo not returned counts as never found)
    absent   the same query against the event with the person's own photos removed: did it return
             anything ("you" tier; either tier)?
Tiers: a photo is "you" at distance <= t_you; "maybe you" at t_you < distance <= t_maybe, and only
when the "you" tier is not empty (`lookalike.faces.values.split_tiers`): the strict match is the evidence that
the person is at the event at all; the looser tier then lists their harder photos.

Cross-validation by identity: the 13 identities are split into two halves at random (5 seeds x 2
folds); t_you and t_maybe are chosen on one half (largest mAP with no absent-person query
returning anything; ties go to the stricter pair) and reported on the other half. The default is
the same rule on all identities. The precision/recall curve of a single cut is reported too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import Event, load_event, search_average_precision

from lookalike.faces.values import split_tiers

ROOT = Path(__file__).resolve().parents[1]

T_YOU = 0.36
MAYBE_STRANGERS = 1.0
GRID = np.round(np.arange(0.30, 0.5001, 0.01), 2)


def distances(event: Event, q: np.ndarray, keys: list[str]) -> np.ndarray:
    """Per event photo: the distance of its nearest face to the query (inf when no face)."""
    out = np.full(len(keys), np.inf)
    for n, key in enumerate(keys):
        v = event.vectors.get(key)
        if v is not None and len(v):
            out[n] = float(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (v @ q))).min())
    return out


def prepare(event: Event, queries: dict[str, np.ndarray], identity: dict, people: set[str]):
    """For every query of `people`: (distances, relevance) with and without the person present."""
    keys = [
        k
        for k in event.people
        if event.source[k] not in identity or identity[event.source[k]] in people
    ]
    cases = []
    for photo, q in queries.items():
        who = identity[photo]
        if who not in people:
            continue
        mine = [k for k in keys if event.source[k] != photo]
        d = distances(event, q, mine)
        rel = np.array([who in event.people[k] for k in mine])
        if not rel.any():
            continue
        absent = np.array([who not in event.people[k] for k in mine])
        cases.append((d, rel, d[absent]))
    return cases


def score(cases, t_you: float, t_maybe: float) -> dict[str, float]:
    aps, absent_you, absent_any, strangers = [], 0, 0, 0
    for d, rel, d_absent in cases:
        you, maybe = split_tiers(d, t_you, t_maybe)
        strangers += int((~rel[maybe]).sum())
        returned = np.concatenate([you, maybe])
        cut = np.full(len(d), np.inf)
        cut[returned] = d[returned]
        aps.append(search_average_precision(cut, rel, t_maybe))
        a_you, a_maybe = split_tiers(d_absent, t_you, t_maybe)
        absent_you += len(a_you) > 0
        absent_any += len(a_you) + len(a_maybe) > 0
    n = len(cases)
    return {
        "map": float(np.mean(aps)),
        "queries": n,
        "absent_you": absent_you / n,
        "absent_any": absent_any / n,
        "empty_queries": float(np.mean([a == 0 for a in aps])),
        "maybe_strangers": strangers / n,
    }


def choose(cases) -> tuple[float, float, dict]:
    """t_you stays T_YOU (see the module docstring); t_maybe: the largest distance (0.01 steps)
    at which the "maybe you" tier shows at most MAYBE_STRANGERS strangers' photos per search on
    average and no absent-person query returns anything. Recall matters more than a strict cut,
    so the budget is spent on the looser tier; the budget, not the mAP, picks the distance, as
    the mAP of a half reaches 1 long before its strangers run out."""
    best = (T_YOU, score(cases, T_YOU, T_YOU))
    for t_maybe in GRID[GRID >= T_YOU]:
        s = score(cases, T_YOU, float(t_maybe))
        if s["absent_any"] == 0 and s["maybe_strangers"] <= MAYBE_STRANGERS:
            best = (float(t_maybe), s)
    return T_YOU, best[0], best[1]


def pr_curve(cases, thresholds) -> list[dict]:
    """One cut, no tiers: precision and recall over every (query, event photo) pair."""
    out = []
    for t in thresholds:
        tp = fp = fn = 0
        for d, rel, _ in cases:
            got = d <= t
            tp += int((got & rel).sum())
            fp += int((got & ~rel).sum())
            fn += int((~got & rel).sum())
        out.append(
            {
                "threshold": round(float(t), 2),
                "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                "recall": round(tp / (tp + fn), 4),
                "map_single_cut": round(score(cases, float(t), float(t))["map"], 4),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--descriptors", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, help="adds the group photos of deepface/")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--event-variants", help="which copies make up the event (default: all in the file)"
    )
    parser.add_argument(
        "--check",
        help="T_YOU,T_MAYBE: only score these tiers (and single cuts at both) on all people, "
        "e.g. on copies that were not used to choose them",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    chosen = set(args.event_variants.split(",")) if args.event_variants else None
    event, queries, identity = load_event(args.descriptors, args.data_dir, chosen)
    if args.check:
        t_you, t_maybe = (float(x) for x in args.check.split(","))
        every = prepare(event, queries, identity, set(identity.values()))
        report = {
            f"{a:.2f}/{b:.2f}": {k: round(v, 4) for k, v in score(every, a, b).items()}
            for a, b in ((t_you, t_maybe), (t_you, t_you), (t_maybe, t_maybe))
        }
        print(json.dumps({"event_photos": len(event.people), **report}, indent=2))
        return
    everyone = sorted(set(identity.values()))
    folds = []
    for seed in range(args.seeds):
        order = list(np.random.default_rng(seed).permutation(everyone))
        halves = (set(order[: len(order) // 2]), set(order[len(order) // 2 :]))
        for a, b in (halves, halves[::-1]):
            t_you, t_maybe, fit = choose(prepare(event, queries, identity, a))
            held = prepare(event, queries, identity, b)
            folds.append(
                {
                    "seed": seed,
                    "chosen_on": sorted(a),
                    "t_you": t_you,
                    "t_maybe": t_maybe,
                    "fit": {k: round(v, 4) for k, v in fit.items()},
                    "held_out": {k: round(v, 4) for k, v in score(held, t_you, t_maybe).items()},
                    "held_out_at_0.36": round(score(held, 0.36, 0.36)["map"], 4),
                }
            )
    every = prepare(event, queries, identity, set(everyone))
    t_you, t_maybe, fit = choose(every)
    held = [f["held_out"] for f in folds]
    out = {
        "queries": len(every),
        "event_photos": len(event.people),
        "cross_validated": {
            "folds": len(folds),
            "map_mean": round(float(np.mean([h["map"] for h in held])), 4),
            "map_min": round(float(np.min([h["map"] for h in held])), 4),
            "map_at_0.36_mean": round(float(np.mean([f["held_out_at_0.36"] for f in folds])), 4),
            "absent_you_mean": round(float(np.mean([h["absent_you"] for h in held])), 4),
            "absent_any_mean": round(float(np.mean([h["absent_any"] for h in held])), 4),
            "absent_any_max": round(float(np.max([h["absent_any"] for h in held])), 4),
            "maybe_strangers_mean": round(float(np.mean([h["maybe_strangers"] for h in held])), 3),
            "t_maybe_range": [min(f["t_maybe"] for f in folds), max(f["t_maybe"] for f in folds)],
        },
        "all_identities": {"t_you": t_you, "t_maybe": t_maybe, **fit},
        "sweep_tiers_all": {
            f"{ty:.2f}/{tm:.2f}": {k: round(v, 4) for k, v in score(every, ty, tm).items()}
            for ty, tm in (
                (0.36, 0.36),
                (0.36, 0.40),
                (0.36, 0.42),
                (0.36, 0.45),
                (0.38, 0.42),
                (0.38, 0.45),
                (0.40, 0.40),
                (0.40, 0.45),
                (0.42, 0.42),
                (0.45, 0.45),
            )
        },
        "pr_curve": pr_curve(every, np.round(np.arange(0.30, 0.5001, 0.02), 2)),
        "folds": folds,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
