"""Harder faces: what dlib's HOG detector misses, whether the CNN finds it, and how far the
descriptor moves.

    python bench/faces_hard.py --data-dir ../shared/data/faces [--photos 61] [--cnn-misses 12]
        [--json out.json]

Each labelled deepface photo is made harder in three ways (by code, so the truth is known):
    sunglasses  both eyes covered by dark ellipses (from the 5 landmarks of the clean photo)
    blur        motion blur: the photo averaged over 15 px of horizontal shift, then JPEG q80
    tiny        shrunk so the face is 40 px across (the back row of a group shot), JPEG q80
For each: did HOG (the default settings) find the face (a box over the clean photo's face,
scaled); the distances of the found face to the same person's OTHER clean photos (the portraits a
client would search with: the share within 0.36, "you", and 0.42, "maybe you"), and to the
nearest other person's clean photo (a look-alike's portrait closer than 0.36 would claim it).
Then the CNN on up to `--cnn-misses` of HOG's misses.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from common import harder
from PIL import Image, ImageOps

from lookalike.faces.detect import DlibFaceEmbedder, find_faces, make_detector
from lookalike.faces.settings import FaceSettings

ROOT = Path(__file__).resolve().parents[1]

CONDITIONS = ("sunglasses", "blur", "tiny")


def matching(found, target, scale: float):
    """The found face whose centre lies inside the clean face's box (scaled), or None."""
    b = target.box
    x1, y1, x2, y2 = b.x1 * scale, b.y1 * scale, b.x2 * scale, b.y2 * scale
    for f in found:
        cx, cy = (f.box.x1 + f.box.x2) / 2, (f.box.y1 + f.box.y2) / 2
        if x1 <= cx <= x2 and y1 <= cy <= y2:
            return f
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=61)
    parser.add_argument("--cnn-misses", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.data_dir / "deepface"
    with open(root / "identities.csv", newline="") as fh:
        who = {r["file"]: r["identity"] for r in csv.DictReader(fh)}
    files = list(who)[: args.photos]
    settings = FaceSettings()
    hog = make_detector(settings)
    embedder = DlibFaceEmbedder()
    clean_faces, refs = {}, {}
    for file in who:
        with Image.open(root / file) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
        found = find_faces(image, hog, settings)
        if found:
            clean_faces[file] = (image, found[0])
            refs[file] = embedder.embed(image, [found[0]])[0]

    def distances(v: np.ndarray, file: str) -> tuple[list[float], float]:
        mine = [p for p in refs if who[p] == who[file] and p != file]
        theirs = [p for p in refs if who[p] != who[file]]
        d = lambda p: float(np.sqrt(max(0.0, 2 - 2 * float(v @ refs[p]))))  # noqa: E731
        return [d(p) for p in mine], min(d(p) for p in theirs)

    rows, misses = [], []
    for n, file in enumerate(f for f in files if f in clean_faces):
        image, face = clean_faces[file]
        ref = refs[file]
        for how in CONDITIONS:
            picture, scale = harder(image, face, how)
            found = matching(find_faces(picture, hog, settings), face, scale)
            mine, stranger = [], None
            if found is not None:
                mine, stranger = distances(embedder.embed(picture, [found])[0], file)
            else:
                misses.append((file, how, picture, face, scale, ref))
            rows.append(
                {
                    "photo": file,
                    "condition": how,
                    "found": found is not None,
                    "to_own": mine,
                    "nearest_stranger": stranger,
                }
            )
        print(n, file, [(r["condition"], r["found"], r["nearest_stranger"]) for r in rows[-3:]])
    summary = {}
    for how in (*CONDITIONS, "clean"):
        if how == "clean":
            mine = [
                {"found": True, "to_own": distances(refs[f], f)[0],
                 "nearest_stranger": distances(refs[f], f)[1]}
                for f in files if f in refs
            ]  # fmt: skip
        else:
            mine = [r for r in rows if r["condition"] == how]
        pairs = [d for r in mine for d in r["to_own"]]
        strangers = [r["nearest_stranger"] for r in mine if r["nearest_stranger"] is not None]
        summary[how] = {
            "photos": len(mine),
            "hog_found": sum(r["found"] for r in mine),
            "portrait_pairs": len(pairs),
            "pairs_within_0.36": round(float(np.mean([d <= 0.36 for d in pairs])), 3),
            "pairs_within_0.42": round(float(np.mean([d <= 0.42 for d in pairs])), 3),
            "distance_median": round(float(np.median(pairs)), 3),
            "nearest_stranger_min": round(min(strangers), 3),
            "stranger_within_0.36": sum(s <= 0.36 for s in strangers),
        }
    cnn_out = []
    if misses and args.cnn_misses:
        cnn_settings = FaceSettings(detector="cnn")
        cnn = make_detector(cnn_settings)
        for file, how, picture, face, scale, _ref in misses[: args.cnn_misses]:
            t0 = time.process_time()
            found = matching(find_faces(picture, cnn, cnn_settings), face, scale)
            d = None
            if found is not None:
                own = distances(embedder.embed(picture, [found])[0], file)[0]
                d = round(float(np.median(own)), 3) if own else None
            cnn_out.append(
                {
                    "photo": file,
                    "condition": how,
                    "cnn_found": found is not None,
                    "distance": d,
                    "cpu_s": round(time.process_time() - t0, 1),
                }
            )
            print("cnn", cnn_out[-1], flush=True)
    out = {"summary": summary, "hog_misses": len(misses), "cnn_on_hog_misses": cnn_out}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
