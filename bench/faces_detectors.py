"""Which faces each detector finds, and at what cost: dlib HOG vs dlib MMOD CNN, at two sizes.

    python bench/faces_detectors.py --data-dir ../shared/data/faces [--photos N] [--json out]

Photos: the two group photos (couple.jpg: 2 faces, selfie-many-people.jpg: 7, counted by eye)
and the first N labelled deepface photos (one person each, sometimes with others behind).
For each (detector, detect_size): faces found per photo and detection seconds (wall and this
process's CPU), through `find_faces` with the index's settings otherwise. A larger detect_size
is the "upsampling" for small faces: the photo is enlarged (up to max_upscale) before the
detector sees it. The machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from PIL import Image, ImageOps

from lookalike.faces.detect import find_faces, make_detector
from lookalike.faces.settings import FaceSettings

ROOT = Path(__file__).resolve().parents[1]

BY_EYE = {"couple.jpg": 2, "selfie-many-people.jpg": 7}
CONFIGS = (("hog", 1024), ("hog", 2048), ("cnn", 1024), ("cnn", 640))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--configs", default=",".join(f"{d}:{s}" for d, s in CONFIGS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.data_dir / "deepface"
    with open(root / "identities.csv", newline="") as fh:
        labelled = [r["file"] for r in csv.DictReader(fh)][: args.photos]
    names = [*BY_EYE, *labelled]
    images = {}
    for n in names:
        with Image.open(root / n) as im:
            images[n] = ImageOps.exif_transpose(im).convert("RGB")
    out: dict = {"photos": names, "by_eye": BY_EYE, "runs": {}}
    for config in args.configs.split(","):
        det, size = config.split(":")
        settings = FaceSettings(detector=det, detect_size=int(size))  # type: ignore[arg-type]
        detector = make_detector(settings)
        found, wall, cpu = {}, 0.0, 0.0
        for n in names:
            w0, c0 = time.perf_counter(), time.process_time()
            faces = find_faces(images[n], detector, settings)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            found[n] = [round(f.size) for f in faces]
            print(config, n, len(faces), f"{time.perf_counter() - w0:.1f}s", flush=True)
        out["runs"][config] = {
            "faces": {n: len(v) for n, v in found.items()},
            "sizes": found,
            "total_faces": sum(len(v) for v in found.values()),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "s_per_photo": round(wall / len(names), 2),
        }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
