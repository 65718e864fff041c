"""Face indexing speed per detector, and the latency of a selfie search (p50 / p95).

    python bench/faces_bench.py --data-dir ../shared/data/faces [--cnn-photos 4] [--queries 30]
        [--json out.json]

Indexing: `FaceIndex.index` cold, through the product (decode, detect, align, embed, store):
    hog   every deepface photo (61 labelled + the 2 group photos)
    cnn   the 2 group photos + the first `--cnn-photos` - 2 labelled ones (the CNN costs ~50x)
Reported: faces/s and photos/s (wall), faces per CPU-second of this process (all threads).
Query: `FaceIndex.search(selfie)` end to end (decode at full size, detect, embed, vector search,
tiers) for `--queries` portraits against the HOG index of 63 photos; p50 / p95 of the wall time,
and of the vector search alone (timings_ms["search"]). Models are loaded before timing.
The machine is shared with other jobs: the 1-minute load average is reported with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from lookalike.faces.index import FaceIndex
from lookalike.faces.settings import FaceSettings

ROOT = Path(__file__).resolve().parents[1]

GROUPS = ("couple.jpg", "selfie-many-people.jpg")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def index_speed(photos: list[Path], detector: str, work: Path) -> tuple[dict, Path]:
    album = work / f"album-{detector}"
    album.mkdir()
    for p in photos:
        shutil.copy(p, album / p.name)
    index_dir = work / f"index-{detector}"
    fi = FaceIndex(index_dir, face_settings=FaceSettings(detector=detector))  # type: ignore[arg-type]
    fi.faces_in(Image.new("RGB", (64, 64)))  # load the models outside the timing
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    summary = fi.index(album)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    fi.close()
    return {
        "detector": detector,
        "photos": len(photos),
        "faces": summary.faces_written,
        "seconds": round(wall, 1),
        "faces_per_s": round(summary.faces_written / wall, 2),
        "photos_per_s": round(len(photos) / wall, 2),
        "cpu_seconds": round(cpu, 1),
        "faces_per_cpu_s": round(summary.faces_written / cpu, 2),
        "detect_seconds": round(summary.detect_seconds, 1),
        "embed_seconds": round(summary.embed_seconds, 1),
        "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
    }, index_dir


def query_latency(index_dir: Path, selfies: list[Path]) -> dict:
    with FaceIndex(index_dir) as fi:
        fi.search(selfies[0])  # models loaded, shard opened
        load = os.getloadavg()[0]
        wall, search = [], []
        for s in selfies:
            t0 = time.perf_counter()
            result = fi.search(s, face=0)
            wall.append((time.perf_counter() - t0) * 1e3)
            search.append(result.timings_ms["search"])
    return {
        "queries": len(selfies),
        "ms_p50": round(percentile(wall, 0.5), 1),
        "ms_p95": round(percentile(wall, 0.95), 1),
        "vector_search_ms_p50": round(percentile(search, 0.5), 2),
        "vector_search_ms_p95": round(percentile(search, 0.95), 2),
        "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--cnn-photos", type=int, default=4)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.data_dir / "deepface"
    with open(root / "identities.csv", newline="") as fh:
        labelled = [root / r["file"] for r in csv.DictReader(fh)]
    groups = [root / g for g in GROUPS]
    work = Path(tempfile.mkdtemp(prefix="faces-bench-"))
    try:
        hog, hog_index = index_speed(groups + labelled, "hog", work)
        latency = query_latency(hog_index, labelled[: args.queries])
        cnn, _ = index_speed(groups + labelled[: max(0, args.cnn_photos - 2)], "cnn", work)
    finally:
        shutil.rmtree(work)
    out = {
        "machine": f"{os.cpu_count()} CPUs shared with other jobs; dlib single-threaded",
        "index": {"hog": hog, "cnn": cnn},
        "selfie_query": latency,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
