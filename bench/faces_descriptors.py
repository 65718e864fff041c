"""Face descriptors of the labelled deepface photos, as portraits and as "event photo" copies.

    python bench/faces_descriptors.py --data-dir ../shared/data/faces --out faces-desc.npz
        [--detector hog|cnn] [--variants photo,small,dim]

Every labelled photo (identities.csv) goes through the real pipeline (`FaceIndex.faces_in`:
detect, align, embed) several times, as:
    photo   the photo as it is (the query portrait, and an easy event photo)
    small   the photo shrunk so its largest face is 64 px across, saved as JPEG quality 80:
            a face in the back of a group shot
    dim     shrunk to a 96 px face, then lit unevenly (brightness falling from 100 % at the left
            edge to 35 % at the right, gamma 1.4) and saved as JPEG quality 80: a face by a window
    sunglasses, blur, tiny   the harder copies of `faces_hard.py` (dark ellipses over the eyes;
            15 px motion blur; a 40 px face), not used to choose the defaults (`--variants`)
The output (npz) holds, per (photo, variant), every face's descriptor and box size, for
`bench/faces_calibrate.py`, which does the statistics without running dlib again.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.faces.index import FaceIndex
from lookalike.faces.settings import FaceSettings

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("photo", "small", "dim")


def labels(root: Path) -> dict[str, str]:
    with open(root / "identities.csv", newline="") as fh:
        return {r["file"]: r["identity"] for r in csv.DictReader(fh)}


def jpeg(image: Image.Image, quality: int = 80) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def shrink(image: Image.Image, face_px: float, target: float) -> Image.Image:
    scale = min(1.0, target / max(face_px, 1.0))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def uneven_light(image: Image.Image) -> Image.Image:
    a = np.asarray(image, dtype=np.float32) / 255.0
    ramp = np.linspace(1.0, 0.35, a.shape[1], dtype=np.float32)[None, :, None]
    out = np.clip((a**1.4) * ramp, 0.0, 1.0)
    return Image.fromarray((out * 255.0 + 0.5).astype(np.uint8))


def variant(image: Image.Image, face_px: float, name: str) -> Image.Image:
    match name:
        case "photo":
            return image
        case "small":
            return jpeg(shrink(image, face_px, 64))
        case "dim":
            return jpeg(uneven_light(shrink(image, face_px, 96)))
    raise ValueError(name)


def hard_variant(image: Image.Image, face, name: str) -> Image.Image:
    """`faces_hard.harder` on the query face `face` (a QueryFace: its box as a FaceBox)."""
    from common import harder

    from lookalike.faces.detect import FaceBox
    from lookalike.types import Box

    box = Box(*face.box)
    return harder(image, FaceBox(box, face.det_score, box), name)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detector", default="hog", choices=("hog", "cnn"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    root = args.data_dir / "deepface"
    names = args.variants.split(",")
    fi = FaceIndex(Path("/nonexistent"), face_settings=FaceSettings(detector=args.detector))
    rows_file, rows_variant, rows_id, vectors, sizes, photo_faces = [], [], [], [], [], []
    started = time.perf_counter()
    for n, (file, who) in enumerate(sorted(labels(root).items()), 1):
        with Image.open(root / file) as im:
            from PIL import ImageOps

            image = ImageOps.exif_transpose(im).convert("RGB")
        found = fi.faces_in(image)
        face_px = max((f.face_size for f in found), default=max(image.size) / 3)
        for name in names:
            if name in ("sunglasses", "blur", "tiny"):
                picture = hard_variant(image, found[0], name)
            else:
                picture = variant(image, face_px, name)
            faces = found if name == "photo" else fi.faces_in(picture)
            photo_faces.append((file, name, len(faces)))
            for f in faces:
                rows_file.append(file)
                rows_variant.append(name)
                rows_id.append(who)
                vectors.append(f.vector)
                sizes.append(f.face_size)
        print(
            f"{n} {file} {who} faces={len(found)} {time.perf_counter() - started:.0f}s", flush=True
        )
    np.savez_compressed(
        args.out,
        photo=np.array(rows_file),
        variant=np.array(rows_variant),
        identity=np.array(rows_id),
        vector=np.stack(vectors).astype(np.float32),
        size=np.array(sizes, dtype=np.float32),
        photo_faces=np.array(photo_faces),
        detector=np.array(args.detector),
    )


if __name__ == "__main__":
    main()
