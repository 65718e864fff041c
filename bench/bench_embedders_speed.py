"""Embedders side by side: model time per photo (indexing's batch of 8) and photo query latency.

    export LOOKALIKE_MODELS_MIRROR=/work/shared/models LOOKALIKE_CACHE_DIR=$PWD/.cache/lookalike
    .venv/bin/python bench/bench_embedders_speed.py --queries sample/queries.csv \
        --index grocery-index --index ens-index --n 40 --json speed.json

Each `--index` is searched with its own embedder and the engine's defaults (projection when the
index has one, TTA crops); rounds are interleaved photo by photo, so a burst of load on a shared
machine hits every index alike. The first 2 photos only warm up. Then each index's embedder embeds
the same batches of 8 prepared photos (`embed_prepared`, what indexing runs), interleaved again.
Prints medians (and p95 of queries) in milliseconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.pipeline.decode import load_image

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, action="append", required=True)
    parser.add_argument("--queries", type=Path, required=True, help="CSV image,item_id")
    parser.add_argument("--n", type=int, default=40, help="query photos timed")
    parser.add_argument("--batches", type=int, default=10, help="batches of 8 timed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with args.queries.open() as f:
        photos = [row[0] for row in csv.reader(f) if row and row[0] != "image"][: args.n + 2]
    engines = {str(i): Engine(i, settings=Settings(index=i)) for i in args.index}
    query_ms: dict[str, list[float]] = {name: [] for name in engines}
    for n, photo in enumerate(photos):
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.search(photo, k=10)
            if n >= 2:
                query_ms[name].append((time.perf_counter() - started) * 1000)

    images = [load_image(p).image for p in photos[: 8 * args.batches]]
    embed_ms: dict[str, list[float]] = {name: [] for name in engines}
    prepared = {
        name: [e.embedder.prepare(im) for im in images]  # type: ignore[attr-defined]
        for name, e in engines.items()
    }
    for start in range(0, len(images), 8):
        for name, engine in engines.items():
            batch = np.stack(prepared[name][start : start + 8])
            started = time.perf_counter()
            engine.embedder.embed_prepared(batch)  # type: ignore[attr-defined]
            embed_ms[name].append((time.perf_counter() - started) * 1000 / len(batch))

    out: dict[str, Any] = {}
    for name, engine in engines.items():
        q = np.asarray(query_ms[name])
        out[name] = {
            "embedder": engine.embedder_name,
            "query_p50_ms": float(np.median(q)),
            "query_p95_ms": float(np.percentile(q, 95)),
            "queries": len(q),
            "embed_ms_per_photo_batch8": float(np.median(embed_ms[name])),
        }
        print(
            f"{engine.embedder_name:28s} query p50 {out[name]['query_p50_ms']:6.1f} ms "
            f"p95 {out[name]['query_p95_ms']:6.1f} ms | model {out[name]['embed_ms_per_photo_batch8']:5.1f}"
            " ms/photo (batch 8)"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
