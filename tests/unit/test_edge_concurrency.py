"""The embedded store answers searches from several threads while another thread writes and
rebuilds the HNSW graph (`settle()`), as `lookalike serve` does when items are added."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from lookalike.store.base import Condition, Filter, PointRecord, point_id
from lookalike.store.edge import EdgeParams, EdgeStore

DIM = 32


def _points(rng: np.random.Generator, start: int, n: int) -> list[PointRecord]:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return [
        PointRecord(
            point_id(f"item{(start + i) // 4}", f"img{start + i}"),
            {"image": x[i]},
            {"item_id": f"item{(start + i) // 4}", "kind": "view", "pending": False},
        )
        for i in range(n)
    ]


def test_searches_never_fail_while_writing_and_optimizing(tmp_path: Path) -> None:
    # Tiny thresholds: a graph is built after every write batch, so searches overlap builds.
    params = EdgeParams(m=8, ef_construct=32, optimize_threshold=1, indexing_threshold_kb=1)
    store = EdgeStore(tmp_path / "shard", {"image": DIM}, params)
    store.ensure_index("kind", "keyword")
    rng = np.random.default_rng(0)
    store.upsert(_points(rng, 0, 400))
    assert store.settle()
    views = Filter((Condition("kind", "eq", "view"), Condition("pending", "ne", True)))
    errors: list[BaseException] = []
    short: list[int] = []
    answered = [0]
    stop = threading.Event()

    def reader(seed: int) -> None:
        r = np.random.default_rng(seed)
        while not stop.is_set():
            q = r.normal(size=DIM).astype(np.float32)
            try:
                hits = store.search(q, limit=10, flt=views)
                groups = store.search_groups(q, groups=5, flt=views)
            except BaseException as exc:  # any failure is the finding
                errors.append(exc)
                return
            if len(hits) != 10 or len(groups) != 5:
                short.append(len(hits))
            answered[0] += 1

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    builds = 0
    started = time.perf_counter()
    for batch in range(8):
        store.upsert(_points(rng, 400 + 100 * batch, 100))
        builds += store.settle()
    stop.set()
    for t in threads:
        t.join(30)
    store.close()
    assert errors == []
    assert short == []
    assert builds >= 4, "the graph was not rebuilt while searching: the test proved nothing"
    assert answered[0] >= 20, (answered, time.perf_counter() - started)
