"""How often the match levels ("same product", "similar", "no close match") are right.

The levels are calibrated on the index's own catalogue photos only (`lookalike.engine.calibration`);
this script REPORTS them on photos the calibration never saw: the grocery val split (every photo's
product is in the catalogue) and photos of things the catalogue does not sell (fashion tops, faces).

    python bench/eval_match_levels.py --index IDX --queries sample/queries.csv \\
        --outside ../shared/data/fashion/products --outside ../shared/data/faces/deepface [--limit 100]

Prints, per mode, the share of each verdict on the top hit, how often the top hit is the right
product under each verdict, and writes the same as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

from lookalike.catalog import IMAGE_EXTENSIONS
from lookalike.config import Settings
from lookalike.engine.calibration import calibrate_index, calibration_levels, describe
from lookalike.engine.core import Engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True, help="CSV image,item_id")
    ap.add_argument("--outside", type=Path, action="append", default=[])
    ap.add_argument("--limit", type=int, default=100, help="outside photos per folder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {}
    with Engine(args.index, settings=Settings(index=args.index)) as engine:
        with engine.write_lock():
            calibrate_index(engine)  # no-op when the levels are current
        space = "tuned" if engine.projection is not None else "image"
        out["levels"] = describe(calibration_levels(engine), space)
        print(out["levels"])
        with open(args.queries) as fh:
            inside = [(r["image"], r["item_id"]) for r in csv.DictReader(fh)]
        outside = []
        for folder in args.outside:
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            outside += [(str(p), None) for p in files[: args.limit]]
        for mode in ("centroid", "views"):
            verdicts: Counter = Counter()
            right: Counter = Counter()
            for photo, item in inside:
                top = engine.search(photo, k=1, mode=mode).hits[0]
                verdicts[top.match] += 1
                right[top.match] += top.item_id == item
            foreign: Counter = Counter(
                engine.search(photo, k=1, mode=mode).match for photo, _ in outside
            )
            out[mode] = {
                "inside": {
                    v: {"photos": n, "top_hit_right": right[v]} for v, n in verdicts.items()
                },
                "inside_total": len(inside),
                "outside": dict(foreign),
                "outside_total": len(outside),
            }
            print(mode, json.dumps(out[mode]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
