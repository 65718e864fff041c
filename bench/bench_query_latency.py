"""Photo query latency of the engine under each accuracy setting, side by side in one process.

    export LOOKALIKE_MODELS_MIRROR=/work/shared/models LOOKALIKE_CACHE_DIR=$PWD/.cache/lookalike
    .venv/bin/python bench/bench_query_latency.py --index grocery-index \
        --queries sample/queries.csv --n 40 --json latency.json

Every query photo goes through every configuration in turn (interleaved, so a burst of load on a
shared machine hits them alike); the first 2 photos only warm the models up. A configuration is a
set of `Settings` overrides (`tuned`, `tta`, `text_fusion`) on the same index. Prints p50 / p95 of
the whole `Engine.search` call (decode, embed, search, OCR when it runs) in milliseconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CONFIGS: dict[str, dict[str, Any]] = {
    "image only (no projection, no TTA)": {"tuned": False, "tta": "none", "text_fusion": False},
    "+ projection": {"tuned": True, "tta": "none", "text_fusion": False},
    "+ projection + TTA crops (default)": {"tuned": True, "tta": "crops", "text_fusion": False},
    "+ projection + TTA flip+crops": {"tuned": True, "tta": "flip+crops", "text_fusion": False},
    "+ projection + TTA crops + text fusion": {
        "tuned": True,
        "tta": "crops",
        "text_fusion": True,
    },
}


def main() -> None:
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True, help="CSV image,item_id")
    parser.add_argument("--n", type=int, default=40, help="query photos timed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with open(args.queries, newline="") as fh:
        photos = [row["image"] for row in csv.DictReader(fh)]
    rng = np.random.default_rng(0)
    sample = [photos[i] for i in sorted(rng.choice(len(photos), args.n + 2, replace=False))]
    # One engine (one open shard); each configuration swaps its settings in turn.
    engine = Engine(args.index, settings=Settings(index=args.index))
    settings = {name: Settings(index=args.index, **o) for name, o in CONFIGS.items()}
    if engine.text_index() is None:
        settings = {k: v for k, v in settings.items() if not CONFIGS[k]["text_fusion"]}
    times: dict[str, list[float]] = {name: [] for name in settings}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in settings}
    for n, path in enumerate(sample):
        for name, s in settings.items():
            engine.settings = s
            start = time.perf_counter()
            result = engine.search(path, k=args.k)
            ms = (time.perf_counter() - start) * 1e3
            if n >= 2:  # the first two photos load the models
                times[name].append(ms)
                for stage, value in result.timings_ms.items():
                    stages[name].setdefault(stage, []).append(value)
    print(f"| configuration | p50 ms | p95 ms | stages p50 ms | photos ({args.n} timed) |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        parts = ", ".join(
            f"{stage} {np.percentile(v, 50):.0f}"
            + (f" (run on {len(v)})" if len(v) < len(values) else "")
            for stage, v in stages[name].items()
        )
        print(
            f"| {name} | {np.percentile(values, 50):.0f} | {np.percentile(values, 95):.0f} | "
            f"{parts} | {len(values)} |"
        )
    engine.close()
    if args.json:
        args.json.write_text(json.dumps({"times": times, "stages": stages}, indent=1))


if __name__ == "__main__":
    main()
