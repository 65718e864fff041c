"""Indexing while serving: a real `lookalike serve` answers a steady stream of photo queries while a
second part of the catalogue is added to the same index through its API.

    .venv/bin/python bench/bench_concurrent.py [--part1 30] [--part2 8] [--photos 4]
        [--clients 2] [--before 40] [--json OUT]

Data: the grocery catalogue (`prepare_grocery`, real photos, the default model). Part 1: every
other product (up to --part1), --photos catalogue photos each, indexed first with `Engine.index`.
Part 2: --part2 other products, added while queries run, one `POST /api/items` per product (the
server's write path: `Engine.index([item])` under its write lock). Queries: the products' `val/`
photos (shoppers' photos, never indexed), both parts, round-robin, alternating `centroid` and
`views` mode, `k = 5`, from --clients threads, each waiting for its answer before sending the next.

Phases: `before` (--before queries per client, nothing written), `during` (until the last POST
returns), `after` (the same number of queries as `before`). Reported: queries answered and failed
(any non-200 or transport error), p50 / p95 latency per phase.

Partial items. An answer shows an item of part 2 only if that item is complete: (1) no answer
received before an item's POST was sent contains it; (2) every part-2 hit's score equals, within
1e-4, its score for the same query and mode on the finished index (recomputed after the run by
the same server): a centroid made of only some views, or a view search over only some views of
the item, would give another score (a view search that already had the best view cannot be told
apart by score; `tests/unit/test_store_wiring.py` checks that case exactly, after every single write).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

API_KEY = "bench-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * (len(xs) - 1)))], 1) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part1", type=int, default=30)
    ap.add_argument("--part2", type=int, default=8)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--before", type=int, default=20, help="queries per client before indexing")
    ap.add_argument(
        "--optimize-threshold",
        type=int,
        default=None,
        help="LOOKALIKE_OPTIMIZE_THRESHOLD for indexing and the server (1: build the HNSW graph "
        "after every write, so queries run while the graph is rebuilt)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.optimize_threshold is not None:
        os.environ["LOOKALIKE_OPTIMIZE_THRESHOLD"] = str(args.optimize_threshold)

    import httpx

    from lookalike.catalog.sample import prepare_grocery
    from lookalike.config import Settings
    from lookalike.engine.core import Engine

    data = Path(os.environ.get("LOOKALIKE_DATA_DIR", "data")) / "grocery"
    work = Path(tempfile.mkdtemp(prefix="bench-concurrent-"))
    files = prepare_grocery(data, work / "sample")
    rows = [json.loads(line) for line in files.catalogue.read_text().splitlines()]
    part1 = rows[::2][: args.part1]
    part2 = rows[1::2][: args.part2]
    for r in part1 + part2:
        r["images"] = r["images"][: args.photos]
    manifest = work / "part1.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in part1))
    index = work / "index"
    t = time.perf_counter()
    with Engine(index, settings=Settings(index=index)) as engine:
        engine.index(manifest)
    part1_s = time.perf_counter() - t
    wanted = {r["id"] for r in part1 + part2}
    with open(files.queries) as fh:
        qrows = [r for r in csv.DictReader(fh) if r["item_id"] in wanted]
    part2_ids = {r["id"] for r in part2}
    # Interleave the two parts' query photos so part-2 products are asked about all along.
    q2 = [r for r in qrows if r["item_id"] in part2_ids]
    q1 = [r for r in qrows if r["item_id"] not in part2_ids]
    queries = [x for pair in zip(q1, q2, strict=False) for x in pair] or qrows
    photos = {r["image"]: Path(r["image"]).read_bytes() for r in queries}

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with open(work / "server.log", "w") as server_log:
        server = subprocess.Popen(
            [sys.executable, "-m", "lookalike.api.cli", "serve", "--index", str(index),
             "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY,
             "--catalogue-root", str(data), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=server_log,
        )  # fmt: skip
        try:
            with httpx.Client(timeout=60) as c:
                for _ in range(600):
                    try:
                        if c.get(f"{base}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                else:
                    raise SystemExit(f"server did not start; log: {work / 'server.log'}")
            result = _run(base, queries, photos, part2, data, args, httpx)
        finally:
            server.terminate()
            server.wait(30)
    result.update(
        part1_items=len(part1), part2_items=len(part2), photos_per_item=args.photos,
        part1_index_s=round(part1_s, 1), clients=args.clients, load_avg=os.getloadavg(),
        optimize_threshold=os.environ.get("LOOKALIKE_OPTIMIZE_THRESHOLD", "default"),
    )  # fmt: skip
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)


def _run(
    base: str,
    queries: list[dict[str, str]],
    photos: dict[str, bytes],
    part2: list[dict[str, Any]],
    data: Path,
    args: argparse.Namespace,
    httpx: Any,
) -> dict[str, Any]:
    phase = {"name": "before"}
    log: list[dict[str, Any]] = []  # one entry per query
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(10**9))
    posted: dict[str, float] = {}  # item id -> when its POST was sent

    def client(cid: int) -> None:
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                n = next(counter)
                q = queries[n % len(queries)]
                mode = "centroid" if n % 2 == 0 else "views"
                name = phase["name"]
                sent = time.perf_counter()
                entry: dict[str, Any] = {"phase": name, "image": q["image"], "mode": mode}
                try:
                    r = c.post(
                        f"{base}/api/search",
                        files={"photo": ("q.jpg", photos[q["image"]], "image/jpeg")},
                        data={"k": "5", "mode": mode},
                    )
                    entry["status"] = r.status_code
                    if r.status_code == 200:
                        entry["hits"] = [(h["item_id"], h["score"]) for h in r.json()["results"]]
                    else:
                        entry["error"] = r.text[:200]
                except httpx.HTTPError as exc:
                    entry["status"] = 0
                    entry["error"] = repr(exc)
                entry["sent"] = sent
                entry["received"] = time.perf_counter()
                entry["ms"] = (entry["received"] - sent) * 1e3
                with lock:
                    log.append(entry)
                    done_here = sum(1 for e in log if e["phase"] == name)
                if name in ("before", "after") and done_here >= args.before * args.clients:
                    if name == "after":
                        stop.set()
                    else:
                        time.sleep(0.05)  # wait for the writer to start (phase switch)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for th in threads:
        th.start()
    while sum(1 for e in log if e["phase"] == "before") < args.before * args.clients:
        time.sleep(0.05)
    phase["name"] = "during"
    writes: list[dict[str, Any]] = []
    w_started = time.perf_counter()
    with httpx.Client(timeout=600) as c:
        for row in part2:
            body = {k: v for k, v in row.items() if k != "images"}
            body["images"] = [os.path.relpath(p, data) for p in row["images"]]
            posted[str(row["id"])] = time.perf_counter()
            t = time.perf_counter()
            r = c.post(f"{base}/api/items", json=body, headers={"X-API-Key": API_KEY})
            writes.append(
                {"id": row["id"], "status": r.status_code, "s": round(time.perf_counter() - t, 2)}
            )
    w_s = time.perf_counter() - w_started
    phase["name"] = "after"
    for th in threads:
        th.join()

    # The finished index's scores for every (query, mode) that showed a part-2 item.
    part2_ids = {str(r["id"]) for r in part2}
    final: dict[tuple[str, str], dict[str, float]] = {}
    with httpx.Client(timeout=120) as c:
        for e in log:
            key = (e["image"], e["mode"])
            if key in final or not any(i in part2_ids for i, _ in e.get("hits", [])):
                continue
            r = c.post(
                f"{base}/api/search",
                files={"photo": ("q.jpg", photos[e["image"]], "image/jpeg")},
                data={"k": "20", "mode": e["mode"]},
            )
            final[key] = {h["item_id"]: h["score"] for h in r.json()["results"]}
    early, changed = [], []
    for e in log:
        for item_id, score in e.get("hits", []):
            if item_id not in part2_ids:
                continue
            if item_id not in posted or e["received"] < posted[item_id]:
                early.append({"item": item_id, "phase": e["phase"]})
            ref = final[(e["image"], e["mode"])].get(item_id)
            if ref is None or abs(ref - score) > 1e-4:
                changed.append({"item": item_id, "mode": e["mode"], "score": score, "final": ref})
    phases: dict[str, Any] = {}
    for name in ("before", "during", "after"):
        es = [e for e in log if e["phase"] == name]
        ok = [e["ms"] for e in es if e["status"] == 200]
        phases[name] = {
            "answered": len(ok),
            "failed": len(es) - len(ok),
            "p50_ms": _pct(ok, 0.5),
            "p95_ms": _pct(ok, 0.95),
            "qps": round(len(ok) / max(1e-9, (max(e["received"] for e in es) -
                                               min(e["sent"] for e in es))), 2) if es else 0,
        }  # fmt: skip
    shown = sum(1 for e in log if any(i in part2_ids for i, _ in e.get("hits", [])))
    return {
        "phases": phases,
        "writes": writes,
        "write_s": round(w_s, 1),
        "answers_showing_part2": shown,
        "partial_by_time": early,
        "partial_by_score": changed,
        "errors": [e["error"] for e in log if e["status"] != 200][:10],
    }


if __name__ == "__main__":
    main()
