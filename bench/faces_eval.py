"""Face search quality on labelled faces: retrieval (Recall@K, mAP) and verification (TPR @ FPR).

    .venv/bin/python bench/faces_eval.py --data-dir ../shared/data/faces [--json out.json]

Data sets:
    deepface/identities.csv   61 photos of 13 people (file,identity); varied pose, light, age
    orl/sN/*.pgm              40 people x 10 greyscale 92x112 photos

Protocol (per data set), through the real pipeline (`FaceIndex`: detect, align, embed, store):
    - every photo is indexed into a fresh face index;
    - retrieval: each photo in turn is the query (its largest face); the other photos are ranked
      by their best face's distance (no threshold); relevant = the person's other photos.
      A photo whose query face was not found ranks nothing (counts as a miss, AP 0);
    - verification: one descriptor per photo (its largest face); every pair of photos is a
      same-person or different-person pair; TPR at the largest threshold with FPR <= 1e-2;
    - pair calibration on ORL (FPR <= 1e-3), reported on both sets: where the "you" distance
      0.36 came from. The tiers ("you" / "maybe you") are chosen by `bench/faces_calibrate.py`
      on colour photos.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    best_accuracy_threshold,
    pair_distances,
    rates,
    threshold_at_fpr,
    tpr_at_fpr,
)

from lookalike.evaluation.metrics import evaluate
from lookalike.faces.index import FaceIndex
from lookalike.faces.settings import FaceSettings

ROOT = Path(__file__).resolve().parents[1]

CALIBRATION_FPR = 1e-3
SWEEP = (0.32, 0.34, 0.36, 0.38, 0.40, 0.42, 0.45, 0.50)


def deepface(root: Path) -> dict[str, str]:
    """photo path -> identity."""
    with open(root / "identities.csv", newline="") as fh:
        return {str(root / r["file"]): r["identity"] for r in csv.DictReader(fh)}


def orl(root: Path, work: Path) -> dict[str, str]:
    """ORL's PGM files, converted losslessly to PNG under `work` (the decoder takes only the
    formats photo catalogues hold, and PGM is not one of them)."""
    from PIL import Image

    out = {}
    for pgm in sorted(root.glob("s*/*.pgm")):
        png = work / pgm.parent.name / (pgm.stem + ".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(pgm) as im:
            im.save(png)
        out[str(png)] = pgm.parent.name
    return out


def run(name: str, labels: dict[str, str], settings: FaceSettings) -> dict:
    """Index, then score retrieval and verification. Returns metrics and the raw distances."""
    with tempfile.TemporaryDirectory() as tmp, FaceIndex(Path(tmp), face_settings=settings) as fi:
        t0 = time.perf_counter()
        summary = fi.index(list(labels))
        index_s = time.perf_counter() - t0
        vectors: dict[str, np.ndarray] = {}
        for photo in labels:
            faces = fi.faces(photo, with_vectors=True)
            if faces:
                vectors[photo] = max(faces, key=lambda f: f.face_size).vector  # type: ignore[assignment]
        ranked, relevant = [], []
        for photo, person in labels.items():
            rel = {p for p, who in labels.items() if who == person and p != photo}
            if not rel:
                continue
            if photo in vectors:
                hits = fi.search_vector(vectors[photo], threshold=2.0, k=len(labels))
                ranked.append([m.photo for m in hits if m.photo != photo])
            else:
                ranked.append([])
            relevant.append(rel)
        metrics = evaluate(ranked, relevant, ks=(1, 5, 10))
        people = fi.clusters()
        person_of = {f.face_id: p.person_id for p in people for f in p.faces}
        largest = {
            photo: max(fi.faces(photo), key=lambda f: f.face_size).face_id for photo in vectors
        }
        cluster = [person_of[largest[p]] for p in vectors]
        truth = [labels[p] for p in vectors]
        clustering = pair_agreement(cluster, truth)
        clustering["people_found"] = len(set(cluster))
    photos = list(labels)
    matrix = np.stack([vectors.get(p, np.full(128, np.nan, dtype=np.float32)) for p in photos])
    pos, neg = pair_distances(matrix, [labels[p] for p in photos])
    tpr, t_at = tpr_at_fpr(pos, neg, 1e-2)
    return {
        "name": name,
        "photos": len(labels),
        "people": len(set(labels.values())),
        "photos_with_face": len(vectors),
        "faces_detected": summary.faces_written,
        "skipped": len(summary.skipped),
        "index_seconds": round(index_s, 1),
        "recall@1": metrics["recall@1"],
        "recall@5": metrics["recall@5"],
        "recall@10": metrics["recall@10"],
        "map": metrics["map"],
        "queries": metrics["queries"],
        "pairs_same": len(pos),
        "pairs_different": len(neg),
        "tpr@fpr1e-2": tpr,
        "threshold@fpr1e-2": t_at,
        "clusters": clustering,
        "_pos": pos,
        "_neg": neg,
    }


def pair_agreement(found: list[int], truth: list[str]) -> dict[str, float]:
    """Pairwise precision / recall of a clustering: of the pairs put together, how many are one
    person; of the pairs that are one person, how many were put together."""
    together = same = both = 0
    for i in range(len(found)):
        for j in range(i + 1, len(found)):
            a, b = found[i] == found[j], truth[i] == truth[j]
            together += a
            same += b
            both += a and b
    return {
        "pair_precision": round(both / together, 4) if together else 1.0,
        "pair_recall": round(both / same, 4) if same else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with deepface/, orl/")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    settings = FaceSettings()
    work = Path(tempfile.mkdtemp(prefix="faces-eval-"))
    sets = {
        "orl": orl(args.data_dir / "orl", work),
        "deepface": deepface(args.data_dir / "deepface"),
    }
    for name, labels in sets.items():
        if not labels:
            sys.exit(f"no photos found for {name} under {args.data_dir}")
    try:
        results = {name: run(name, labels, settings) for name, labels in sets.items()}
    finally:
        shutil.rmtree(work)

    calib = results["orl"]
    t_cal = threshold_at_fpr(calib["_neg"], CALIBRATION_FPR)
    t_acc, acc = best_accuracy_threshold(calib["_pos"], calib["_neg"])
    default = settings.threshold
    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}, shared with other jobs",
        "settings": settings.model_dump(),
        "calibration": {
            "set": "orl",
            "rule": f"largest distance with FPR <= {CALIBRATION_FPR} on ORL pairs",
            "threshold": round(t_cal, 4),
            "best_balanced_accuracy_threshold": round(t_acc, 4),
            "best_balanced_accuracy": round(acc, 4),
            "default_threshold_in_settings": default,
        },
        "sets": {},
    }
    for name, r in results.items():
        tpr, fpr = rates(r["_pos"], r["_neg"], default)
        row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k[0] != "_"}
        row["at_default_threshold"] = {
            "threshold": default,
            "tpr": round(tpr, 4),
            "fpr": round(fpr, 5),
        }
        row["sweep"] = {
            f"{t:.2f}": dict(
                zip(
                    ("tpr", "fpr"),
                    (round(x, 5) for x in rates(r["_pos"], r["_neg"], t)),
                    strict=True,
                )
            )
            for t in SWEEP
        }
        row["distance_same_median"] = round(float(np.median(r["_pos"])), 4)
        row["distance_different_p01"] = round(float(np.quantile(r["_neg"], 0.01)), 4)
        out["sets"][name] = row
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
