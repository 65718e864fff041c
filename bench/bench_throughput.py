"""How close does embedding get to this machine's arithmetic limit, and does int8 help?

    .venv/bin/python bench/bench_throughput.py [--data DIR] [--out bench/out/throughput.json]
        [--skip-quant] [--calibration 128]

1. sgemm: numpy float32 matrix multiply GFLOP/s (2*n^3 flops per n x n product), with all cores
   and with one (a subprocess with OPENBLAS_NUM_THREADS=1), median of 5 after a warm-up.
2. FLOPs per image of the default embedder counted from its ONNX graph at the catalogue's input
   size (shape inference with batch 1): multiply-accumulates of Conv / MatMul / Gemm, times 2.
3. Model-only ms/image (session.run on ready tensors, batch 8) of the float model and of int8
   versions (dynamic and static QDQ), and the implied images/s vs the sgemm ceiling.
4. int8 quality: grocery Recall@1 (product centroids, catalogue = iconic + train, queries = val)
   recomputed with each quantised model; kept only within 0.01 of the float model.

The machine is shared: figures are medians and ratios of runs taken side by side in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import graph_flops, sgemm_gflops

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def sgemm_one_thread(n: int = 2048) -> float:
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"from bench.bench_throughput import sgemm_gflops; print(sgemm_gflops({n}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def model_ms(model: Path, tensor: np.ndarray, runs: int = 7, threads: int = 0) -> float:
    """Median ms per image of session.run on a ready batch, after one warm-up run.

    threads: ONNX Runtime intra-op threads (0: one per core)."""
    from lookalike.models.runtime import open_session

    session = open_session(model, threads=threads)
    name = session.get_inputs()[0].name
    session.run(["gem"], {name: tensor})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(["gem"], {name: tensor})
        times.append((time.perf_counter() - t) * 1e3 / len(tensor))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("LOOKALIKE_DATA_DIR", "")))
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "throughput.json")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-throughput")
    ap.add_argument("--skip-quant", action="store_true", help="only sgemm, FLOPs and ms/image")
    ap.add_argument("--reuse", action="store_true", help="reuse int8 models of an earlier run")
    ap.add_argument("--calibration", type=int, default=128, help="photos for static calibration")
    ap.add_argument("--recipes", default="dynamic,static", help="int8 recipes to build and time")
    ap.add_argument(
        "--check",
        default="static",
        help="recipes whose grocery Recall@1 is measured (dynamic is ~8x slower: off by default)",
    )
    args = ap.parse_args()

    from quantcheck import check_quantized, grocery_recall

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec
    from lookalike.models.quantize import (
        grocery_protocol,
        quantize_dynamic_int8,
        quantize_static_int8,
    )
    from lookalike.models.store import sha256_file
    from lookalike.pipeline.decode import load_image
    from lookalike.pipeline.embed import to_tensor

    settings = Settings()
    spec = get_spec(settings.models.embedder)
    model = wiring.model_store(settings).path(spec.name)
    model = model / spec.files[0].filename
    assert spec.preprocess is not None
    if not (args.data / "grocery" / "classes.csv").exists():
        sys.exit(f"grocery data not found under {args.data}: pass --data or LOOKALIKE_DATA_DIR")
    catalogue, queries = grocery_protocol(args.data / "grocery", args.work / "grocery")

    report: dict[str, object] = {
        "machine": f"{_cpu()}, {os.cpu_count()} cores, shared with other engineers",
        "model": spec.name,
        "input": spec.preprocess.size,
    }
    report["sgemm_gflops_all_cores"] = sgemm_gflops()
    report["sgemm_gflops_one_core"] = sgemm_one_thread()
    flops = graph_flops(model, spec.preprocess.size)
    report["graph"] = flops
    print(json.dumps(report, indent=2), flush=True)

    tensor = to_tensor([load_image(p).image for p, _ in catalogue[:8]], spec.preprocess)
    models = {"float32": model}
    checks = {}
    if not args.skip_quant:
        step = max(1, len(catalogue) // args.calibration)
        calib = [p for p, _ in catalogue[::step]][: args.calibration]
        for recipe in args.recipes.split(","):
            dest = args.work / f"{spec.name}-int8-{recipe}.onnx"
            started = time.perf_counter()
            if args.reuse and dest.exists():
                pass  # quantised by an earlier run of this script
            elif recipe == "dynamic":
                quantize_dynamic_int8(model, dest)
            else:
                quantize_static_int8(model, dest, calib, spec.preprocess)
            print(f"{recipe}: quantised in {time.perf_counter() - started:.0f} s", flush=True)
            models[f"int8-{recipe}"] = dest
    # Model-only timings side by side, alternating models so a noisy neighbour hits all alike;
    # one thread too, which a busy shared machine disturbs less than two spinning threads.
    timings: dict[str, list[float]] = {k: [] for k in models}
    one: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(3):
        for k, path in models.items():
            timings[k].append(model_ms(path, tensor))
            if k != "int8-dynamic":  # ~10x slower: not worth the machine time
                one[k].append(model_ms(path, tensor, runs=3, threads=1))
    ms = {k: statistics.median(v) for k, v in timings.items()}
    report["model_ms_per_image_batch8"] = ms
    report["model_ms_per_image_batch8_one_thread"] = {
        k: statistics.median(v) for k, v in one.items() if v
    }
    report["sgemm_gflops_after_timings"] = sgemm_gflops()
    gflop_per_image = flops["flops"] / 1e9
    peak = float(report["sgemm_gflops_all_cores"])  # type: ignore[arg-type]
    report["ceiling_images_per_s"] = peak / gflop_per_image
    report["achieved"] = {
        k: {
            "images_per_s": 1e3 / v,
            "gflops": gflop_per_image * 1e3 / v,
            "fraction_of_sgemm": gflop_per_image * 1e3 / v / peak,
        }
        for k, v in ms.items()
    }
    print(json.dumps(report, indent=2), flush=True)
    if not args.skip_quant:
        started = time.perf_counter()
        cached = args.work / "float-recall.json"  # keyed by the model's bytes
        digest = sha256_file(model)
        saved = json.loads(cached.read_text()) if cached.exists() else {}
        if saved.get("sha256") == digest:
            float_result = (saved["recall"], saved["ms"])
        else:
            float_result = grocery_recall(model, spec.preprocess, catalogue, queries)
            cached.write_text(
                json.dumps({"sha256": digest, "recall": float_result[0], "ms": float_result[1]})
            )
        report["float_recall_at_1"] = float_result[0]
        print(f"float32 Recall@1 {float_result[0]:.4f} ({time.perf_counter() - started:.0f} s)")
        wanted = {f"int8-{r}" for r in args.check.split(",") if r}
        for k, path in models.items():
            if k not in wanted:
                continue
            started = time.perf_counter()
            check = check_quantized(
                model,
                path,
                spec.preprocess,
                catalogue,
                queries,
                recipe=k,
                float_result=float_result,
            )
            checks[k] = {
                "float_recall_at_1": check.float_recall_at_1,
                "int8_recall_at_1": check.int8_recall_at_1,
                "delta": check.delta,
                "keep": check.keep,
                "float_ms_per_image_in_check": check.float_ms_per_image,
                "int8_ms_per_image_in_check": check.int8_ms_per_image,
                "float_mb": check.float_bytes / 1e6,
                "int8_mb": check.int8_bytes / 1e6,
                "queries": check.queries,
                "catalogue_images": check.catalogue_images,
                "seconds": time.perf_counter() - started,
            }
            print(k, json.dumps(checks[k], indent=2), flush=True)
        report["int8_checks"] = checks
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
