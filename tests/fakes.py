"""Fakes for unit tests: a tiny deterministic embedder and generated photos."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.pipeline.embed import l2_normalise
from lookalike.types import F32


class TinyEmbedder:
    """Images -> their 4x4 colour thumbnail, centred and L2-normalised (48-d).

    Deterministic and order-independent, so indexes built in different runs compare exactly.
    `delay` seconds per batch lets a test kill a process mid-run.
    """

    name = "tiny-test-embedder"
    dim = 48

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def embed_images(self, images: Sequence[Image.Image]) -> F32:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        rows = [
            np.asarray(im.convert("RGB").resize((4, 4), Image.Resampling.BOX), np.float32).reshape(
                -1
            )
            for im in images
        ]
        x = np.stack(rows) - 127.5
        return l2_normalise(x) if len(rows) else np.zeros((0, self.dim), np.float32)


def photo(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A JPEG whose colour pattern is determined by `seed` (distinct seeds -> distinct vectors)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    arr = np.kron(base, np.ones((size[1] // 4, size[0] // 4, 1), np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)
    return path


def noisy_copy(src: Path, dest: Path, seed: int) -> Path:
    """The same photo with a little noise: a 'shopper's photo' of the same product."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(Image.open(src).convert("RGB"), np.float32)
    arr = np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(dest, quality=90)
    return dest


def small_catalogue(root: Path, n_items: int = 6, views: int = 3) -> Path:
    """A JSONL manifest of `n_items` items with `views` distinct photos each, a title, a category
    (Milk for odd items, Juice for even) and a price (10 x item number), under `root`."""
    rows = []
    for i in range(n_items):
        images = [
            str(photo(root / "img" / f"p{i}_{j}.jpg", seed=i * 100 + j)) for j in range(views)
        ]
        rows.append(
            {
                "id": f"p{i}",
                "images": images,
                "title": f"product {i}",
                "category": "Milk" if i % 2 else "Juice",
                "price": 10.0 * i,
            }
        )
    manifest = root / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest
