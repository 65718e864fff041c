"""Vector search at scale: Qdrant Edge (float32, int8, TurboQuant, binary) vs exact numpy vs FAISS.

    .venv/bin/python bench/bench_scale.py --n 100000 [--data-kind copies|mixtures]
        [--engines exact,edge,edge-int8,edge-turbo4,edge-bq,faiss,faiss-sq8]
        [--m 32 --ef-construct 200] [--ef 32,64,128,256,512,1024] [--exact-queries 100]
        [--work .cache/bench-scale] [--grocery-npz FILE] [--data DIR] [--json OUT]

Data: real EfficientNet-Lite2 (GeM, 1280-d, L2-normalised) embeddings of real photos: the grocery
catalogue (iconic + train, 2,721 photos) and the fashion set (600 garments + 600 worn photos),
embedded here with the default model unless `--grocery-npz` gives cached grocery vectors. The first
rows of the collection are the real vectors; it is grown to N (`build_collection`) by
- copies: normalise(source + e), e ~ N(0, s^2 I), s = 0.0101: a copy has cosine 0.94 with its
  source and two copies of one photo ~0.88, the median cosine between a real catalogue photo and
  its nearest other real photo;
- mixtures: normalise(a + t (b - a) + e), b one of a's 20 most similar real photos, t ~ U(0, 1).
Queries: the 296 grocery `val/` photos (real photos that are not in the collection). Ground truth:
exact top-10 by inner product over all N. docs/parts/scale.md discusses both data sets.

Quantised Edge engines keep their codes in RAM and the float32 originals on disk (`Memory.Cold`),
rescoring with them. Each engine is built in its own process, then served from a fresh process
that loads it from disk (so RSS is what serving costs, not what building cost), answers every query
once per setting after 50 warm-up queries, and reports p50 / p95 latency of single queries
(k = 10, one at a time), recall@10 against exact search, RSS (anon + file-backed) and disk.
Queries are prepared as Python lists before timing. The machine is shared: read ratios measured in
the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 1280
K = 10
SIGMA = 0.0101  # cos(copy, source) = 1 / sqrt(1 + DIM * SIGMA^2) = 0.94
WARMUP = 50
ENGINES = ("exact", "edge", "edge-int8", "edge-bq", "edge-turbo4", "faiss", "faiss-sq8")


# -- data ------------------------------------------------------------------------------------------


def real_vectors(work: Path, data: Path, grocery_npz: Path | None) -> dict[str, np.ndarray]:
    """Sources (collection seeds) and queries: real photos embedded with the default model."""
    cache = work / "real.npz"
    if cache.exists():
        return dict(np.load(cache))
    from quantcheck import embed_files

    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.models.catalog import get_spec
    from lookalike.models.quantize import grocery_protocol

    settings = Settings()
    spec = get_spec(settings.models.embedder)
    assert spec.preprocess is not None
    model = wiring.model_store(settings).path(spec.name)
    model = model / spec.files[0].filename
    if grocery_npz is not None:
        g = np.load(grocery_npz)
        cat, queries = g["cat_vectors"], g["query_vectors"]
    else:
        catalogue, qs = grocery_protocol(data / "grocery", work / "grocery")
        cat, _ = embed_files(model, spec.preprocess, [p for p, _ in catalogue])
        queries, _ = embed_files(model, spec.preprocess, [p for p, _ in qs])
    fashion_dir = data / "fashion"
    photos = sorted(str(p) for sub in ("products", "worn") for p in (fashion_dir / sub).glob("*"))
    if not photos:
        sys.exit(f"no fashion photos under {fashion_dir}: pass --data or LOOKALIKE_DATA_DIR")
    fashion, _ = embed_files(model, spec.preprocess, photos)
    work.mkdir(parents=True, exist_ok=True)
    out = {
        "sources": np.concatenate([cat, fashion]).astype(np.float32),
        "queries": np.asarray(queries, np.float32),
    }
    np.savez(cache, **out)
    return out


def build_collection(
    work: Path, n: int, sources: np.ndarray, kind: str = "copies", seed: int = 0
) -> Path:
    """N x DIM float32 .npy (memory-mapped when read): the real vectors, then synthetic ones.

    copies: normalise(source + e), e ~ N(0, SIGMA^2 I): near-duplicates of the real photos.
    mixtures: normalise(a + t (b - a) + e), a a real photo, b one of its 20 most similar real
        photos, t ~ U(0, 1), e ~ N(0, (SIGMA / 2)^2 I): "in-between" photos of similar things.
    """
    path = work / (f"base-{n}.npy" if kind == "copies" else f"base-{kind}-{n}.npy")
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    near = None
    if kind == "mixtures":
        sim = sources @ sources.T
        np.fill_diagonal(sim, -np.inf)
        near = np.argsort(-sim, axis=1)[:, :20]
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, DIM))
    real = min(n, len(sources))
    out[:real] = sources[:real]
    chunk = 50_000
    for start in range(real, n, chunk):
        stop = min(n, start + chunk)
        pick = rng.integers(0, len(sources), stop - start)
        src = sources[pick]
        if near is None:
            x = src + rng.normal(0.0, SIGMA, size=src.shape).astype(np.float32)
        else:
            other = sources[near[pick, rng.integers(0, near.shape[1], len(pick))]]
            t = rng.uniform(0.0, 1.0, (len(pick), 1)).astype(np.float32)
            noise = rng.normal(0.0, SIGMA / 2, size=src.shape).astype(np.float32)
            x = src + t * (other - src) + noise
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    tmp.rename(path)
    return path


def ground_truth(work: Path, base: Path, queries: np.ndarray) -> np.ndarray:
    """(Q, K) ids of the exact top-K by inner product (= cosine: rows are unit length)."""
    path = work / f"gt-{base.stem}.npy"
    if path.exists():
        return np.load(path)
    x = np.load(base, mmap_mode="r")
    best_s = np.full((len(queries), K), -np.inf, np.float32)
    best_i = np.zeros((len(queries), K), np.int64)
    for start in range(0, len(x), 100_000):
        s = np.asarray(x[start : start + 100_000]) @ queries.T  # (chunk, Q)
        s = s.T
        idx = np.argpartition(-s, K, axis=1)[:, :K]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], axis=1)
        cand_i = np.concatenate([best_i, idx + start], axis=1)
        top = np.argsort(-cand_s, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
    np.save(path, best_i)
    return best_i


# -- measuring -------------------------------------------------------------------------------------


def _status() -> dict[str, float]:
    """This process's memory, MiB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmLck"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _disk(path: Path) -> int:
    """Bytes allocated on disk (st_blocks), so sparse pre-allocated files count as what they use."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def _recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def _timed(search: Any, queries: list[Any], truth: np.ndarray) -> dict[str, float]:
    for q in queries[:WARMUP]:
        search(q)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        ids = search(q)
        times.append((time.perf_counter() - t) * 1e3)
        found.append(ids)
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        "recall@10": _recall(found, truth),
    }


# -- engines (each phase runs in its own process) --------------------------------------------------


def _edge_config(engine: str, m: int, efc: int) -> Any:
    import qdrant_edge as qe

    quant: Any = None
    originals = qe.Memory.Pinned  # float32 vectors in RAM
    if engine == "edge-int8":
        quant = qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned
        )
    elif engine == "edge-bq":
        quant = qe.BinaryQuantizationConfig(memory=qe.Memory.Pinned)
    elif engine == "edge-turbo4":
        quant = qe.TurboQuantQuantizationConfig(
            bits=qe.TurboQuantBitSize.Bits4, memory=qe.Memory.Pinned
        )
    if quant is not None:
        # Quantised codes in RAM for the graph walk; float32 originals stay on disk and only the
        # rescored candidates are read (`Cached` pages all of them in when the shard loads).
        originals = qe.Memory.Cold
    return qe.EdgeConfig(
        vectors={
            "image": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine, memory=originals)
        },
        hnsw_config=qe.HnswIndexConfig(m=m, ef_construct=efc, full_scan_threshold=10_000),
        quantization_config=quant,
    )


def build(engine: str, base: Path, out: Path, m: int, efc: int) -> dict[str, Any]:
    x = np.load(base, mmap_mode="r")
    started = time.perf_counter()
    info: dict[str, Any] = {}
    if engine.startswith("edge"):
        import qdrant_edge as qe

        shard = qe.EdgeShard.create(str(out), _edge_config(engine, m, efc))
        for start in range(0, len(x), 1000):
            rows = np.asarray(x[start : start + 1000])
            points = [
                qe.Point(
                    id=start + i,
                    vector={"image": row.tolist()},
                    payload={"item_id": str((start + i) % 5000)},
                )
                for i, row in enumerate(rows)
            ]
            shard.update(qe.UpdateOperation.upsert_points(points))
        info["upsert_s"] = time.perf_counter() - started
        shard.optimize()
        shard.flush()
        si = shard.info()
        info.update(
            segments=si.segments_count, indexed=si.indexed_vectors_count, points=si.points_count
        )
        shard.close()
    elif engine.startswith("faiss"):
        import faiss

        if engine == "faiss":
            index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWSQ(
                DIM, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT
            )
            index.train(np.asarray(x[:: max(1, len(x) // 50_000)]))
        index.hnsw.efConstruction = efc
        for start in range(0, len(x), 50_000):
            index.add(np.asarray(x[start : start + 50_000]))
        faiss.write_index(index, str(out))
    info["build_s"] = time.perf_counter() - started
    info["build_peak_rss_mib"] = _status()["VmHWM"]
    return info


def serve(
    engine: str, base: Path, out: Path, work: Path, efs: list[int], exact_queries: int = 0
) -> dict[str, Any]:
    queries = np.load(work / "real.npz")["queries"]
    truth = ground_truth(work, base, queries)
    before = _status()
    results: dict[str, Any] = {"rss_before_load_mib": before["VmRSS"]}
    started = time.perf_counter()
    if engine == "exact":
        x = np.load(base)  # the whole matrix in RAM: what exact search costs
        results["load_s"] = time.perf_counter() - started

        def search(q: np.ndarray) -> list[int]:
            s = x @ q
            top = np.argpartition(-s, K)[:K]
            return top[np.argsort(-s[top])].tolist()

        n = exact_queries or len(queries)  # exact search at 1M is slow: a subset is enough
        results["queries"] = n
        results["settings"] = {"exact": _timed(search, list(queries[:n]), truth[:n])}
    elif engine.startswith("edge"):
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(str(out))
        results["load_s"] = time.perf_counter() - started
        qs = [q.tolist() for q in queries]
        settings: dict[str, Any] = {}
        oversampling = {"edge": [None], "edge-int8": [1.0, 2.0], "edge-bq": [2.0, 4.0, 8.0]}.get(
            engine, [1.0, 2.0]
        )
        for ef in efs:
            for over in oversampling:
                quant = (
                    None
                    if over is None
                    else qe.QuantizationSearchParams(rescore=True, oversampling=over)
                )
                params = qe.SearchParams(hnsw_ef=ef, quantization=quant)

                def search(q: list[float], params: Any = params) -> list[int]:
                    req = qe.QueryRequest(
                        limit=K,
                        query=qe.Query.Nearest(q, using="image"),
                        with_payload=False,
                        params=params,
                    )
                    return [int(p.id) for p in shard.query(req)]

                label = f"ef={ef}" + ("" if over is None else f",oversampling={over}")
                settings[label] = _timed(search, qs, truth)
        results["settings"] = settings
    else:
        import faiss

        index = faiss.read_index(str(out))
        results["load_s"] = time.perf_counter() - started
        qs = [q.reshape(1, -1) for q in queries]
        settings = {}
        for ef in efs:
            index.hnsw.efSearch = ef

            def search(q: np.ndarray) -> list[int]:
                return index.search(q, K)[1][0].tolist()

            settings[f"ef={ef}"] = _timed(search, qs, truth)
        results["settings"] = settings
    after = _status()
    results["rss_mib"] = after["VmRSS"]
    results["rss_anon_mib"] = after["RssAnon"]
    results["rss_file_mib"] = after["RssFile"]
    results["peak_rss_mib"] = after["VmHWM"]
    results["locked_mib"] = after.get("VmLck", 0.0)
    results["disk_bytes"] = _disk(base) if engine == "exact" else _disk(out)
    return results


# -- orchestration ---------------------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> None:
    base, out = Path(args.base), Path(args.out)
    efs = [int(e) for e in args.ef.split(",")]
    if args.phase == "build":
        res = build(args.worker, base, out, args.m, args.ef_construct)
    else:
        res = serve(args.worker, base, out, Path(args.work), efs, args.exact_queries)
    print("RESULT " + json.dumps(res), flush=True)


def _run_phase(
    engine: str, phase: str, args: argparse.Namespace, base: Path, out: Path
) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--worker", engine, "--phase", phase, "--base", str(base),
        "--out", str(out), "--work", str(args.work), "--m", str(args.m),
        "--ef-construct", str(args.ef_construct), "--ef", args.ef,
        "--exact-queries", str(args.exact_queries),
    ]  # fmt: skip
    env = dict(os.environ)
    if engine == "exact":
        # One query on one core, like the HNSW searches; BLAS threads only spin on a busy machine.
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{engine} {phase} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--engines", default="exact,edge,edge-int8,faiss")
    ap.add_argument("--m", type=int, default=16, help="HNSW links per node (Qdrant m, FAISS M)")
    ap.add_argument(
        "--ef-construct", type=int, default=100, help="HNSW ef_construct / efConstruction"
    )
    ap.add_argument(
        "--ef", default="32,64,128,256,512,1024", help="search-time hnsw_ef / efSearch values"
    )
    ap.add_argument(
        "--exact-queries", type=int, default=0, help="time exact search on the first N queries"
    )
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-scale")
    ap.add_argument(
        "--data-kind",
        choices=("copies", "mixtures"),
        default="copies",
        help="how the real vectors are grown to N (see build_collection)",
    )
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("LOOKALIKE_DATA_DIR", "")))
    ap.add_argument("--grocery-npz", type=Path, default=None, help="cached grocery vectors")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the built indexes")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per build / serve process")
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--phase", choices=("build", "serve"), help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    real = real_vectors(args.work, args.data, args.grocery_npz)
    started = time.perf_counter()
    base = build_collection(args.work, args.n, real["sources"], args.data_kind)
    ground_truth(args.work, base, real["queries"])
    report: dict[str, Any] = {
        "machine": f"{_cpu()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        "shared with other engineers during the run",
        "n": args.n,
        "data_kind": args.data_kind,
        "dim": DIM,
        "real_sources": len(real["sources"]),
        "queries": len(real["queries"]),
        "sigma": SIGMA,
        "hnsw": {"m": args.m, "ef_construct": args.ef_construct},
        "data_s": time.perf_counter() - started,
        "engines": {},
    }
    print(json.dumps({k: v for k, v in report.items() if k != "engines"}), flush=True)
    for engine in args.engines.split(","):
        out = (
            args.work / f"{engine}-{args.n}"
            if not engine.startswith("faiss")
            else args.work / f"{engine}-{args.n}.faiss"
        )
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        res: dict[str, Any] = {}
        if engine != "exact":
            res["build"] = _run_phase(engine, "build", args, base, out)
        res["serve"] = _run_phase(engine, "serve", args, base, out)
        report["engines"][engine] = res
        print(engine, json.dumps(res), flush=True)
        if not args.keep and engine != "exact":
            shutil.rmtree(out) if out.is_dir() else out.unlink(missing_ok=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
