"""Skin and hair inside the person boxes of the fashion pairs: how `ViewSettings.min_skin` was set.

    export LOOKALIKE_MODELS_MIRROR=... LOOKALIKE_CACHE_DIR=...
    python bench/garment_skin.py --data ../shared/data/fashion --out /tmp/skin

For every product shot and worn photo: YOLOX-Nano's most relevant `person` (the fashion view
settings), PAN's skin and hair share of that box (`GarmentParts.skin_share`). Prints how many photos
of each kind have a person box and the distribution of their share, and how many fall under each
candidate threshold; writes OUT/skin.json and OUT/skin_sheet.png (product shots YOLOX calls a
person, with their share: the pictures stay out of the repository, the photos' licence forbids it).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    from lookalike.config import Settings
    from lookalike.engine.core import Engine
    from lookalike.pipeline.views import ViewSettings, kept_objects

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((args.data / "pairs.csv").open()))
    views = ViewSettings(detect=True, isolate="garment", labels=frozenset({"person"}))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(index=Path(tmp) / "index")
        detector, isolator = Engine(settings.index, settings=settings, views=views).stages()
        assert detector is not None and isolator is not None  # the views detect and isolate
        shares: dict[str, list[float | None]] = {}
        sheet: list[tuple[Image.Image, object, float]] = []
        for kind in ("product_image", "worn_image"):
            shares[kind] = []
            for row in rows:
                image = Image.open(args.data / row[kind]).convert("RGB")
                found = kept_objects(detector.detect(image), image.size, views)
                if not found:
                    shares[kind].append(None)
                    continue
                share = isolator.garment_parts(image, found[0].box, "upper").skin_share
                shares[kind].append(share)
                if kind == "product_image" and len(sheet) < 16:
                    sheet.append((image, found[0].box, share))
    for kind, values in shares.items():
        got = np.array([v for v in values if v is not None])
        q = np.quantile(got, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
        under = {t: int((got < t).sum()) for t in (0.005, 0.01, 0.02, 0.05)}
        print(f"{kind}: person box in {len(got)} of {len(values)}; share quantiles "
              f"0/5/25/50/75/95/100 %: {np.round(q, 3).tolist()}; under threshold: {under}")  # fmt: skip
    (args.out / "skin.json").write_text(json.dumps(shares))
    canvas = Image.new("RGB", (8 * 120, 2 * 170), "white")
    for i, (image, box, share) in enumerate(sheet):
        shot = image.copy()
        ImageDraw.Draw(shot).rectangle(box.as_list(), outline=(255, 0, 0), width=3)  # type: ignore[attr-defined]
        shot.thumbnail((120, 150))
        x, y = (i % 8) * 120, (i // 8) * 170
        canvas.paste(shot, (x, y))
        ImageDraw.Draw(canvas).text((x + 4, y + 152), f"skin {share:.3f}", fill=(0, 0, 0))
    canvas.save(args.out / "skin_sheet.png")


if __name__ == "__main__":
    main()
