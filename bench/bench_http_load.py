"""Photo searches per second through the HTTP API, with concurrent clients, on this machine.

    .venv/bin/python bench/bench_http_load.py [--data DIR] [--index DIR] [--clients 8]
        [--duration 20] [--search-threads 2,4] [--rounds 3] [--out bench-http.json]

Starts `lookalike serve` (python -m lookalike.api.cli_serve) in a subprocess on 127.0.0.1, then
`--clients` threads, each with its own httpx client, post grocery `val/` photos to /api/search
(k = 10, multipart, as the web page does) for `--duration` seconds after a warm-up. Latency is
measured by the clients (request sent -> JSON received); every non-200 answer or transport error
counts as an error. Each round measures, one after the other: `Engine.search` in-process on the
same photos (the reference without HTTP), then for each `--search-threads` value (searches the
server runs at once) a one-client and a `--clients` run. Medians over the rounds are reported.
Without `--index`, a grocery index (every product, 10 photos each) is built first in a temporary
folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_index(data: Path, dest: Path, photos: int) -> Path:
    from lookalike.catalog.sample import prepare_grocery
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    files = prepare_grocery(data, dest / "sample")
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
    for row in rows:
        row["images"] = row["images"][:photos]
    manifest = dest / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = dest / "index"
    with Engine(index, settings=Settings(index=index)) as engine:
        summary = engine.index(manifest)
    print(f"indexed {summary.items} items, {summary.images_embedded} photos -> {index}")
    return index


class Server:
    """`lookalike serve` in a subprocess; stopped with SIGTERM (uvicorn shuts down cleanly)."""

    def __init__(self, index: Path, search_threads: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "lookalike.api.cli_serve",
            "--index",
            str(index),
            "--port",
            str(self.port),
            "--search-threads",
            str(search_threads),
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).json().get("ready"):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("server did not become ready in 180 s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(url: str, photos: list[bytes], clients: int, duration: float, warmup: int) -> dict:
    """`clients` threads searching for `duration` seconds; latencies in ms, errors counted."""
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = [0.0]

    def clock_starts() -> None:  # runs once, when every client has warmed up
        stop_at[0] = time.perf_counter() + duration

    start = threading.Barrier(clients + 1, action=clock_starts)

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(warmup):
                http.post("/api/search", files={"photo": ("q.jpg", photos[(n + i) % len(photos)])})
            start.wait()
            i = n
            while time.perf_counter() < stop_at[0]:
                data = photos[i % len(photos)]
                i += clients
                t = time.perf_counter()
                try:
                    r = http.post("/api/search", files={"photo": ("q.jpg", data)}, data={"k": "10"})
                    ms = (time.perf_counter() - t) * 1e3
                    ok = r.status_code == 200 and len(r.json()["results"]) == 10
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if ok:
                        latencies.append(ms)
                        server_ms.append(r.json()["timings_ms"]["total"])
                    else:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = stop_at[0] - duration
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    arr = np.asarray(latencies)
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "searches": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:5],
        "per_second": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(arr, 50)), 1) if len(arr) else None,
        "p95_ms": round(float(np.percentile(arr, 95)), 1) if len(arr) else None,
        "p99_ms": round(float(np.percentile(arr, 99)), 1) if len(arr) else None,
        "server_p50_ms": round(statistics.median(server_ms), 1) if server_ms else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    default_data = os.environ.get("LOOKALIKE_SAMPLE_DATA") or (
        str(Path(os.environ["LOOKALIKE_DATA_DIR"]) / "grocery")
        if os.environ.get("LOOKALIKE_DATA_DIR")
        else None
    )
    parser.add_argument(
        "--data", type=Path, default=default_data, help="Grocery Store Dataset folder"
    )
    parser.add_argument("--index", type=Path, help="an existing index (default: build one)")
    parser.add_argument("--photos", type=int, default=10, help="catalogue photos per product")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="searches per client before timing")
    parser.add_argument("--search-threads", default="2,4", help="server settings to compare")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every setting")
    parser.add_argument("--out", type=Path, default=Path("bench-http.json"))
    args = parser.parse_args()
    if args.data is None:
        parser.error("--data (or LOOKALIKE_SAMPLE_DATA / LOOKALIKE_DATA_DIR) must be given")

    index = args.index or build_index(
        args.data, Path(tempfile.mkdtemp(prefix="lookalike-http-")), args.photos
    )
    val = [
        line.split(",")[0].strip()
        for line in (args.data / "val.txt").read_text().splitlines()
        if line.strip()
    ]
    photos = [(args.data / p.lstrip("/")).read_bytes() for p in val]
    print(f"{len(photos)} query photos (val), {args.clients} clients, {args.duration:g} s per run")

    thread_settings = [int(t) for t in args.search_threads.split(",")]
    runs: list[dict] = []
    # Rounds interleave every configuration, so a burst of load from other work on a shared
    # machine hits them alike; the report quotes each configuration's median over the rounds.
    for round_ in range(1, args.rounds + 1):
        run = engine_only(index, photos, args.duration)
        run.update(round=round_, search_threads=None, clients=1, kind="engine")
        runs.append(run)
        print(json.dumps(run))
        for threads in thread_settings:
            server = Server(index, threads)
            try:
                for clients in (1, args.clients):
                    run = load(server.url, photos, clients, args.duration, args.warmup)
                    run.update(round=round_, search_threads=threads, kind="http")
                    runs.append(run)
                    print(json.dumps(run))
            finally:
                server.stop()

    machine = f"{_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load_avg = os.getloadavg()
    out = {
        "machine": machine,
        "load_average_at_end": load_avg,
        "index": str(index),
        "photos": len(photos),
        "runs": runs,
    }
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\nmachine: {machine}; load average at the end {load_avg[0]:.1f}\n")
    print(
        "| what | server search threads | clients | searches/s | p50 ms | p95 ms | "
        "server p50 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    configs = [("engine", None, 1)] + [
        ("http", t, c) for t in thread_settings for c in (1, args.clients)
    ]
    for kind, threads, clients in configs:
        same = [
            r
            for r in runs
            if (r["kind"], r["search_threads"], r["clients"]) == (kind, threads, clients)
        ]

        def med(key: str, rows: list[dict] = same) -> float | None:
            values = [r[key] for r in rows if r[key] is not None]
            return round(statistics.median(values), 1) if values else None

        what = "Engine.search in-process" if kind == "engine" else "HTTP POST /api/search"
        print(
            f"| {what} | {threads or '-'} | {clients} | {med('per_second')} | {med('p50_ms')} | "
            f"{med('p95_ms')} | {med('server_p50_ms') or '-'} | "
            f"{sum(r['errors'] for r in same)} |"
        )


def engine_only(index: Path, photos: list[bytes], duration: float) -> dict:
    """Reference: `Engine.search` on the same photos in this process, one at a time, no HTTP."""
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    latencies: list[float] = []
    with Engine(index, settings=Settings(index=index)) as engine:
        for data in photos[:3]:
            engine.search(data, k=10)
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < duration:
            t = time.perf_counter()
            engine.search(photos[i % len(photos)], k=10)
            latencies.append((time.perf_counter() - t) * 1e3)
            i += 1
        wall = time.perf_counter() - t0
    arr = np.asarray(latencies)
    return {
        "seconds": round(wall, 2),
        "searches": len(latencies),
        "errors": 0,
        "per_second": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(float(np.percentile(arr, 95)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "server_p50_ms": None,
    }


if __name__ == "__main__":
    main()
