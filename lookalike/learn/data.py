"""What `tune --train` learns from: the views the index embeds, and photos in the wild of its items.

Each indexed view is made again from its photo exactly as indexing made it (`Engine.
training_views`: same decoding, detection, isolation), and held as its model input square (8-bit,
`fit_to_input`), which serves three purposes: the clean input for held-out checks, the source of
augmented views, and the input the adapted network re-embeds the index from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import CatalogueError, DecodeError
from lookalike.models.catalog import Preprocess
from lookalike.pipeline.embed import fit_to_input
from lookalike.store.base import where
from lookalike.types import Skipped

if TYPE_CHECKING:
    from lookalike.engine.core import Engine

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainView:
    """One view as the network sees it. point_id: the indexed point it re-embeds (None for a photo
    in the wild); cutout: isolated on a plain background (its backdrop may be swapped)."""

    point_id: str | None
    item_id: str
    photo: str
    pixels: np.ndarray
    cutout: bool = False


@dataclass(frozen=True)
class TrainData:
    """views: the index's views (in point id order); wild: pair photos (photo in the wild, item);
    skipped: photos that could not be read, with the reason; missing: indexed view ids whose photo
    no longer yields them (changed or unreadable since indexing)."""

    views: tuple[TrainView, ...]
    wild: tuple[TrainView, ...]
    skipped: tuple[Skipped, ...]
    missing: tuple[str, ...]

    @property
    def items(self) -> list[str]:
        return sorted({v.item_id for v in self.views})

    def photos_per_item(self) -> dict[str, int]:
        photos: dict[str, set[str]] = {}
        for v in self.views:
            photos.setdefault(v.item_id, set()).add(v.photo)
        return {item: len(p) for item, p in photos.items()}


def indexed_views(engine: Engine) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(item id, photo) -> [(point id, view key)] of every view in the index."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for rec in engine.store.scroll(where("kind", "view"), fields=["item_id", "image", "view_key"]):
        p = rec.payload
        key = (str(p["item_id"]), str(p["image"]))
        out.setdefault(key, []).append((rec.id, str(p.get("view_key", "full"))))
    return out


def check_pairs(pairs: Sequence[tuple[str, str]], items: set[str]) -> None:
    """CatalogueError when pairs name items the index does not hold."""
    unknown = sorted({item for _, item in pairs if item not in items})
    if unknown:
        raise CatalogueError(f"pairs name items the index does not hold: {unknown[:5]}")


def check_data(data: TrainData, pairs: int) -> None:
    """CatalogueError before training when nothing usable was read."""
    if not data.views:
        raise CatalogueError("no indexed photo could be read: nothing to train on")
    if pairs and not data.wild:
        raise CatalogueError("no pair photo could be read: nothing to learn the pairs from")


def collect(
    engine: Engine,
    pp: Preprocess,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    progress: Progress | None = None,
) -> TrainData:
    """Every indexed view and every pair photo, as 8-bit model inputs. Never raises for a bad
    photo: it is skipped with its reason (a skipped indexed photo's views are `missing`)."""
    notify = progress or (lambda stage, done, total: None)
    stored = indexed_views(engine)
    check_pairs(pairs, {item for item, _ in stored})
    vs = engine.views
    cutouts = vs.isolate != "none"
    photos = sorted(stored)

    def load(key: tuple[str, str]) -> tuple[list[TrainView], list[str], Skipped | None]:
        item, photo = key
        try:
            made = dict(engine.training_views(photo))
        except DecodeError as exc:
            return [], [pid for pid, _ in stored[key]], Skipped(photo, str(exc))
        except OSError as exc:
            return [], [pid for pid, _ in stored[key]], Skipped(photo, f"cannot read: {exc}")
        views, missing = [], []
        for pid, view_key in stored[key]:
            if view_key not in made:
                missing.append(pid)
                continue
            pixels = np.asarray(fit_to_input(made[view_key], pp), dtype=np.uint8)
            views.append(TrainView(pid, item, photo, pixels, cutouts and view_key != "full"))
        return views, missing, None

    def load_wild(pair: tuple[str, str]) -> tuple[list[TrainView], list[str], Skipped | None]:
        photo, item = pair
        try:
            (_, image), *_ = engine.training_views(photo, query=True)
        except DecodeError as exc:
            return [], [], Skipped(photo, str(exc))
        except OSError as exc:
            return [], [], Skipped(photo, f"cannot read: {exc}")
        pixels = np.asarray(fit_to_input(image, pp), dtype=np.uint8)
        return [TrainView(None, item, photo, pixels)], [], None

    views: list[TrainView] = []
    wild: list[TrainView] = []
    skipped: list[Skipped] = []
    missing: list[str] = []
    # Two threads, as indexing decodes: the detector and isolator sessions are thread-safe.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="train-read") as pool:
        for stage, jobs, out in (
            ("read views", pool.map(load, photos), views),
            ("read pairs", pool.map(load_wild, list(pairs)), wild),
        ):
            total = len(photos) if out is views else len(pairs)
            notify(stage, 0, total)
            for done, (got, gone, skip) in enumerate(jobs, start=1):
                out.extend(got)
                missing.extend(gone)
                if skip is not None:
                    skipped.append(skip)
                notify(stage, done, total)
    views.sort(key=lambda v: str(v.point_id))
    return TrainData(tuple(views), tuple(wild), tuple(skipped), tuple(sorted(missing)))
