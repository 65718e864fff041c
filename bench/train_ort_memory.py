"""Resident memory of an ONNX Runtime session of Lite2's frozen front (what `tune --train` runs to
cache activations) after batches of N views, one fresh process per N (docs/benchmarks.md,
"Training the network"):

    .venv/bin/python bench/train_ort_memory.py            # N = 128 and 32, 260 px

ONNX Runtime's CPU arena keeps its largest batch's buffers for the session's life, which is why
`lookalike.learn.net.onnx_runner` feeds at most `RUN_BATCH` views at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def measure(batch: int, size: int) -> dict[str, float]:
    import numpy as np
    import torch

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.learn import net as nets

    name = "efficientnet-lite2"
    net = nets.load_network(name, wiring.model_store(Settings()).export_input(name, "weights"))
    front, _ = nets.make_modules(net, nets.split_at(net, name, 5))
    nets.RUN_BATCH = batch  # the runner's chunk: one session.run per `batch` views
    run = nets.onnx_runner(front, torch.zeros(1, 3, size, size), ["act"], threads=2)
    x = np.random.default_rng(0).random((128, 3, size, size), dtype=np.float32)
    run(x)  # warm-up: the arena grows to the batch
    t0 = time.perf_counter()
    run(x)
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return {"batch": batch, "rss_gb": round(rss / 2**20, 2), "seconds_per_128": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--size", type=int, default=260)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.size)))
        return
    for batch in args.batches:
        cmd = [sys.executable, __file__, "--one", str(batch), "--size", str(args.size)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
