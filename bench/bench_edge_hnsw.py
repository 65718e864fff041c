"""The embedded store before and after building its HNSW graph, through the engine's search path.

    .venv/bin/python bench/bench_edge_hnsw.py [--grocery-npz FILE] [--grow 100000] [--json OUT]

Collection: the grocery index as `Engine.index` lays it out, from real vectors (EfficientNet-Lite2,
the default embedder): one `view` point per catalogue photo (iconic + train, 2,721) and one
`centroid` point per product (81, normalised mean of its views). Queries: the 296 `val/` photos.
`--grocery-npz` reuses cached vectors (`cat_vectors`, `cat_items`, `query_vectors`, `query_items`);
without it they are computed here with the default model (`grocery_protocol`, as `lookalike eval`).

`--grow N` adds a second collection of N views: the real views, then copies `normalise(v + e)`,
`e ~ N(0, 0.0101^2 I)` (as bench/bench_scale.py) keeping their product id; centroids as above.

Configurations, each built in a fresh folder and searched through `Engine.search_vector` (filters
`kind = centroid` / visible views, payloads returned, `k = 10`):
- `plain`: no graph (what every index was before `settle()`: a full scan per query);
- `hnsw-noacorn`: `settle()` after writing (m 32, ef_construct 200, hnsw_ef 64), filtered searches
  without ACORN (what `settle()` alone gave: view searches lose recall, see EdgeParams.acorn);
- `hnsw`: the same with ACORN (the default);
- `hnsw-int8`: the same with int8 codes, rescoring x2.
Latency: single queries one at a time after 30 warm-up queries; p50 / p95 in ms. Quality: Recall@1
at product level (the query's product first), both aggregation modes, and `views_recall@10`: the
raw view search's 10 points against exact search over the views (what the graph loses).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SIGMA = 0.0101
CONFIGS = {
    "plain": {"quantization": "none", "settle": False},
    "hnsw-noacorn": {"quantization": "none", "settle": True, "acorn": False},
    "hnsw": {"quantization": "none", "settle": True},
    "hnsw-int8": {"quantization": "int8", "settle": True},
}


def load_vectors(npz: Path | None, work: Path) -> dict[str, np.ndarray]:
    if npz is not None:
        return dict(np.load(npz))
    from quantcheck import embed_files

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec
    from lookalike.models.quantize import grocery_protocol

    settings = Settings()
    data = Path(os.environ.get("LOOKALIKE_DATA_DIR", "data"))
    spec = get_spec(settings.models.embedder)
    assert spec.preprocess is not None
    model = wiring.model_store(settings).path(spec.name)
    catalogue, queries = grocery_protocol(data / "grocery", work / "grocery")
    cat, _ = embed_files(model / spec.files[0].filename, spec.preprocess, [p for p, _ in catalogue])
    qv, _ = embed_files(model / spec.files[0].filename, spec.preprocess, [p for p, _ in queries])
    return {
        "cat_vectors": cat,
        "cat_items": np.array([i for _, i in catalogue]),
        "query_vectors": qv,
        "query_items": np.array([i for _, i in queries]),
    }


def grow(vectors: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    extra = n - len(vectors)
    src = rng.integers(0, len(vectors), size=extra)
    copies = vectors[src] + rng.normal(0, SIGMA, size=(extra, vectors.shape[1])).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    return np.concatenate([vectors, copies]).astype(np.float32), np.concatenate([items, items[src]])


def build(folder: Path, config: dict[str, Any], vectors: np.ndarray, items: np.ndarray) -> Any:
    from lookalike.store.base import PointRecord, point_id
    from lookalike.store.edge import EdgeParams, EdgeStore

    store = EdgeStore(
        folder, {"image": vectors.shape[1]}, EdgeParams(quantization=config["quantization"])
    )
    for name, kind in (("item_id", "keyword"), ("kind", "keyword"), ("pending", "bool")):
        store.ensure_index(name, kind)  # type: ignore[arg-type]
    started = time.perf_counter()
    for start in range(0, len(vectors), 500):
        store.upsert(
            [
                PointRecord(
                    point_id(str(items[i]), f"photo{i}", "full"),
                    {"image": vectors[i]},
                    {"item_id": str(items[i]), "kind": "view", "image": f"photo{i}.jpg",
                     "pending": False},
                )
                for i in range(start, min(start + 500, len(vectors)))
            ]
        )  # fmt: skip
    centroids = []
    for item in sorted(set(items.tolist())):
        mean = vectors[items == item].mean(axis=0)
        centroids.append(
            PointRecord(
                point_id(str(item), "centroid"),
                {"image": mean / np.linalg.norm(mean)},
                {"item_id": str(item), "kind": "centroid", "image": "x.jpg"},
            )
        )
    store.upsert(centroids)
    upsert_s = time.perf_counter() - started
    t = time.perf_counter()
    settled = store.settle() if config["settle"] else False
    return store, {"upsert_s": upsert_s, "settle_s": time.perf_counter() - t, "settled": settled,
                   **store.info()}  # fmt: skip


def point_recall(store: Any, queries: np.ndarray, vectors: np.ndarray) -> float:
    """Recall@10 of the raw view search (filter: visible views) against exact search."""
    from lookalike.engine.records import VISIBLE_VIEWS

    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = 0
    for q, want in zip(queries, exact, strict=True):
        got = {int(h.payload["image"][5:-4]) for h in store.search(q, limit=10, flt=VISIBLE_VIEWS)}
        found += len(got & set(want.tolist()))
    return round(found / (10 * len(queries)), 4)


def measure(store: Any, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    from lookalike.engine.core import Engine

    engine = Engine(Path(tempfile.mkdtemp()), store=store)
    out: dict[str, Any] = {}
    for mode in ("centroid", "views"):
        for q in queries[:30]:
            engine.search_vector(q, k=10, mode=mode)  # type: ignore[arg-type]
        times, hits1 = [], 0
        for q, want in zip(queries, truth, strict=True):
            t = time.perf_counter()
            hits = engine.search_vector(q, k=10, mode=mode)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t) * 1e3)
            hits1 += bool(hits) and hits[0].item_id == str(want)
        times.sort()
        out[mode] = {
            "p50_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3),
            "recall@1": round(hits1 / len(queries), 4),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grocery-npz", type=Path, default=None)
    ap.add_argument("--grow", type=int, default=0, help="also a collection of N views")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--work", type=Path, default=Path(".cache/bench-edge-hnsw"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    v = load_vectors(args.grocery_npz, args.work)
    cat, items = v["cat_vectors"].astype(np.float32), v["cat_items"]
    queries, truth = v["query_vectors"].astype(np.float32), v["query_items"]
    collections = {"grocery": (cat, items)}
    if args.grow:
        collections[f"grown-{args.grow}"] = grow(cat, items, args.grow)
    results: dict[str, Any] = {"load_avg": os.getloadavg()}
    for cname, (vectors, its) in collections.items():
        for name in args.configs.split(","):
            folder = Path(tempfile.mkdtemp(prefix="edge-hnsw-"))
            try:
                store, info = build(folder / "shard", CONFIGS[name], vectors, its)
                info["search"] = measure(store, queries, truth)
                info["views_recall@10"] = point_recall(store, queries, vectors)
                info["disk_mb"] = round(store.disk_bytes() / 1e6, 1)
                store.close()
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            results[f"{cname}/{name}"] = info
            print(cname, name, json.dumps(info), file=sys.stderr, flush=True)
    results["load_avg_after"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
