"""Face indexing speed on photos of a few megapixels: faces/s end to end, and where the time goes.

    .venv/bin/python bench/faces_speed.py --data-dir ../shared/data/faces [--min-mpx 2.5] [--json f]

Photos: every deepface JPEG of at least `--min-mpx` megapixels (2.8 to 14 Mpx), plus the two group
photos. Measured in one run, side by side:
    index      `FaceIndex.index` on the folder, cold (every photo decoded, detected, embedded)
    reindex    the same again: nothing changed, so only read + hash
    decode     per photo: read + decode with the JPEG draft reduction the index uses
    detect     per photo: HOG at the reduced size (`detect_size`) vs at the decoded size
    embed      per face: 5-point landmarks + 128-d descriptor
Medians over photos (or faces); single-threaded dlib, 2 decode threads. The machine is shared with
other jobs, so compare ratios within one run rather than absolute times across runs; the CPU
seconds of the process (all threads) are reported too, as they suffer less from the sharing.
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

from PIL import Image

from lookalike.faces.detect import DlibFaceEmbedder, EmbedderRecord, HogDetector, find_faces
from lookalike.faces.index import FaceIndex
from lookalike.faces.settings import FaceSettings
from lookalike.pipeline.decode import DecodeLimits, load_image

ROOT = Path(__file__).resolve().parents[1]


def pick(folder: Path, min_mpx: float) -> list[Path]:
    out = []
    for p in sorted(folder.glob("*.jpg")):
        with Image.open(p) as im:
            if im.width * im.height >= min_mpx * 1e6:
                out.append(p)
    return out


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with deepface/")
    parser.add_argument("--min-mpx", type=float, default=2.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    photos = pick(args.data_dir / "deepface", args.min_mpx)
    if not photos:
        sys.exit("no photos found")
    settings = FaceSettings()
    work = Path(tempfile.mkdtemp(prefix="faces-speed-"))
    try:
        album = work / "album"
        album.mkdir()
        for p in photos:
            shutil.copy(p, album / p.name)
        mpx = [Image.open(p).width * Image.open(p).height / 1e6 for p in photos]

        with FaceIndex(work / "index", face_settings=settings) as fi:
            # Load the models and hash their files outside the timing.
            fi.faces_in(Image.new("RGB", (64, 64)))
            EmbedderRecord.current()
            load_before = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            cold = fi.index(album)
            cold_s, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
            t0 = time.perf_counter()
            warm = fi.index(album)
            warm_s = time.perf_counter() - t0

        detector = HogDetector(settings.det_threshold)
        embedder = DlibFaceEmbedder()
        limits = DecodeLimits(draft_size=settings.decode_size)
        full = settings.model_copy(update={"detect_size": 100_000, "max_upscale": 1.0})
        decode_t, reduced_t, full_t, embed_t, faces_reduced, faces_full = [], [], [], [], 0, 0
        decoded_mpx = []
        cpu = {"decode": [], "reduced": [], "full": [], "embed": []}
        for p in photos:
            t0, c0 = time.perf_counter(), time.process_time()
            image = load_image(str(p), limits).image
            decode_t.append(time.perf_counter() - t0)
            cpu["decode"].append(time.process_time() - c0)
            decoded_mpx.append(image.width * image.height / 1e6)
            t0, c0 = time.perf_counter(), time.process_time()
            boxes = find_faces(image, detector, settings)
            reduced_t.append(time.perf_counter() - t0)
            cpu["reduced"].append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            faces_full += len(find_faces(image, detector, full))
            full_t.append(time.perf_counter() - t0)
            cpu["full"].append(time.process_time() - c0)
            faces_reduced += len(boxes)
            for b in boxes:
                t0, c0 = time.perf_counter(), time.process_time()
                embedder.embed(image, [b])
                embed_t.append(time.perf_counter() - t0)
                cpu["embed"].append(time.process_time() - c0)
    finally:
        shutil.rmtree(work)

    out = {
        "machine": f"{os.cpu_count()} CPUs, shared with other jobs; dlib single-threaded",
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "photos": len(photos),
        "megapixels_median": round(statistics.median(mpx), 1),
        "megapixels_range": [round(min(mpx), 1), round(max(mpx), 1)],
        "decoded_megapixels_median": round(statistics.median(decoded_mpx), 1),
        "settings": {k: settings.model_dump()[k] for k in ("detect_size", "pad", "decode_size")},
        "index_cold": {
            "seconds": round(cold_s, 2),
            "faces": cold.faces_written,
            "faces_per_s": round(cold.faces_written / cold_s, 2),
            "photos_per_s": round(len(photos) / cold_s, 2),
            "cpu_seconds": round(cold_cpu, 2),
            "faces_per_cpu_s": round(cold.faces_written / cold_cpu, 2),
            "detect_seconds": round(cold.detect_seconds, 2),
            "embed_seconds": round(cold.embed_seconds, 2),
        },
        "index_unchanged": {"seconds": round(warm_s, 2), "photos_unchanged": warm.photos_unchanged},
        "per_photo_ms": {
            "decode_median": median_ms(decode_t),
            "detect_reduced_median": median_ms(reduced_t),
            "detect_decoded_size_median": median_ms(full_t),
            "detect_speedup": round(statistics.median(full_t) / statistics.median(reduced_t), 1),
            "cpu_decode_median": median_ms(cpu["decode"]),
            "cpu_detect_reduced_median": median_ms(cpu["reduced"]),
            "cpu_detect_decoded_size_median": median_ms(cpu["full"]),
        },
        "faces_found": {"reduced": faces_reduced, "decoded_size": faces_full},
        "per_face_ms": {
            "embed_median": median_ms(embed_t),
            "cpu_embed_median": median_ms(cpu["embed"]),
            "faces": len(embed_t),
        },
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
