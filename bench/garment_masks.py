"""Cache the masks behind garment cut-outs of the fashion worn photos (for tuning without rerunning
the models): per photo the detector's person box and the PAN skin/clothes/hair and U^2-NetP masks of
that box, as uint8 arrays in one .npz. Usage:

    nice python bench/garment_masks.py DATA_DIR/fashion OUT.npz
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main(fashion: Path, out: Path) -> None:
    from lookalike.config import Settings
    from lookalike.engine import wiring
    from lookalike.pipeline.detect import YoloxDetector, most_relevant
    from lookalike.pipeline.isolate import Isolator, clip_box, pixels, whole

    s = Settings()
    models = wiring.model_store(s)
    detector = YoloxDetector.from_store(models)
    isolator = Isolator.from_store(models, ("garment",))
    rows = list(csv.DictReader((fashion / "pairs.csv").open()))
    data: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        image = Image.open(fashion / row["worn_image"]).convert("RGB")
        best = most_relevant(detector.detect(image), image.size, {"person"})
        box = clip_box(best.box, image.size) if best is not None else whole(image)
        crop = image.crop(pixels(box))
        parts = isolator.clothes_masker.parts(crop)
        sal = isolator.salient_masker.masks([crop])[0]
        key = row["garment_id"]
        data[f"{key}/box"] = np.asarray([*box.as_list(), best.score if best else 0.0], np.float32)
        data[f"{key}/parts"] = np.round(np.concatenate([parts, sal[None]]) * 255).astype(np.uint8)
        if i % 50 == 0:
            print(i, f"{time.perf_counter() - t0:.1f}s", flush=True)
    np.savez_compressed(out, **data)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
