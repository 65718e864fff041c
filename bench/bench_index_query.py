"""Indexing throughput and photo-query latency on the grocery sample, on this machine.

    .venv/bin/python bench/bench_index_query.py [--data DIR] [--images 800] [--queries 150]

Prints a markdown table (paste into docs/benchmarks.md) and writes the raw figures as JSON.
Model-only figures time `session.run` on ready tensors; end-to-end figures time `Engine.index`
(read, hash, decode, preprocess, infer, upsert, centroids) into a fresh index.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.catalog.sample import prepare_grocery
from lookalike.config import Settings
from lookalike.engine import wiring
from lookalike.engine.core import Engine
from lookalike.models.catalog import get_spec
from lookalike.models.runtime import open_session
from lookalike.pipeline.embed import to_tensor


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def model_only(
    name: str, images: list[Image.Image], batch_sizes: list[int], threads: int
) -> dict[int, float]:
    """ms per image for each batch size: median of 5 timed runs after one warm-up."""
    settings = Settings()
    spec = get_spec(name)
    path = wiring.model_store(settings).path(name)
    session = open_session(path / spec.files[0].filename, threads=threads)
    out: dict[int, float] = {}
    for bs in batch_sizes:
        batch = to_tensor(images[:bs], spec.preprocess)
        session.run(["gem"], {"pixels": batch})
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            session.run(["gem"], {"pixels": batch})
            runs.append((time.perf_counter() - t) * 1e3 / bs)
        out[bs] = statistics.median(runs)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=os.environ.get("LOOKALIKE_SAMPLE_DATA"))
    parser.add_argument("--images", type=int, default=800, help="catalogue images to index")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-latest.json"))
    args = parser.parse_args()
    if args.data is None:
        parser.error("--data (or LOOKALIKE_SAMPLE_DATA) must point at the grocery dataset")

    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    files = prepare_grocery(args.data, work / "sample")
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
    # A subset with every product, a few photos each, up to --images photos in all.
    per_item = max(1, args.images // len(rows))
    for row in rows:
        row["images"] = row["images"][:per_item]
    subset = work / "subset.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n_images = sum(len(r["images"]) for r in rows)
    threads = args.threads or os.cpu_count() or 1

    sample_imgs = [Image.open(p).convert("RGB") for p in rows[0]["images"][:1]] * 32
    result: dict[str, object] = {
        "machine": f"{_cpu()}, {os.cpu_count()} cores",
        "threads": threads,
        "batch_size": args.batch_size,
    }
    model_ms = {
        name: model_only(name, sample_imgs, [1, 4, 8, 16, 32], threads)
        for name in ("efficientnet-lite2", "efficientnet-lite0")
    }
    result["model_only_ms_per_image"] = model_ms

    settings = Settings(index=work / "index", batch_size=args.batch_size, threads=args.threads)
    with Engine(settings.index, settings=settings) as engine:
        _ = engine.embedder  # load the model outside the timed region
        t = time.perf_counter()
        summary = engine.index(subset)
        seconds = time.perf_counter() - t
        result["index"] = {
            "images": n_images,
            "seconds": seconds,
            "images_per_s": summary.images_embedded / seconds,
        }
        t = time.perf_counter()
        engine.index(subset)
        result["reindex_unchanged_s"] = time.perf_counter() - t

        queries = [line.split(",")[0] for line in files.queries.read_text().splitlines()[1:]]
        queries = queries[:: max(1, len(queries) // args.queries)][: args.queries]
        engine.search(queries[0], k=5)  # warm-up
        stages: dict[str, list[float]] = {"decode": [], "embed": [], "search": [], "total": []}
        for q in queries:
            t = time.perf_counter()
            res = engine.search(q, k=5)
            stages["total"].append((time.perf_counter() - t) * 1e3)
            for k, v in res.timings_ms.items():
                stages[k].append(v)
        result["query_ms"] = {k: {"p50": pct(v, 50), "p95": pct(v, 95)} for k, v in stages.items()}
        result["queries"] = len(queries)
        result["index_points"] = engine.stats()["views"]

    args.out.write_text(json.dumps(result, indent=2))
    print(f"machine: {result['machine']}; threads {threads}; batch {args.batch_size}\n")
    print("| model | ms/img b1 | b4 | b8 | b16 | b32 |")
    print("|---|---|---|---|---|---|")
    for name, per in model_ms.items():
        print(f"| {name} | " + " | ".join(f"{per[b]:.1f}" for b in (1, 4, 8, 16, 32)) + " |")
    idx = result["index"]
    print(
        f"\nindex end to end: {idx['images']} images in {idx['seconds']:.1f} s = "  # type: ignore[index]
        f"{idx['images_per_s']:.1f} images/s; unchanged rerun {result['reindex_unchanged_s']:.1f} s"  # type: ignore[index]
    )
    print("\n| query stage | p50 ms | p95 ms |\n|---|---|---|")
    for k, v in result["query_ms"].items():  # type: ignore[union-attr]
        print(f"| {k} | {v['p50']:.1f} | {v['p95']:.1f} |")


if __name__ == "__main__":
    main()
