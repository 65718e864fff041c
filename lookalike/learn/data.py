"""What `tune --train` learns from: the views the index embeds, and photos in the wild of its items.

Each indexed view is made again from its photo exactly as indexing made it (`Engine.
training_views`: same decoding, detection, isolation), and held as its model input square (8-bit,
`fit_to_input`), which serves three purposes: the clean input for held-out checks, the source of
augmented views, and the input the adapted network re-embeds the index from.

Also how that data is held out (`holdout_split`: draws of the catalogue itself, never a query set)
and drawn in batches (`PairBatches`, with the learning-rate `schedule`).
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


# --- held-out draws of the catalogue (never a query set) ----------------------------------------


@dataclass(frozen=True)
class Split:
    """Held-out draw: gallery views (point order) and queries (views or wild photos), by index into
    the training data, and what the held-out queries are."""

    train: tuple[int, ...]
    train_wild: tuple[int, ...]
    queries: tuple[int, ...]
    query_wild: tuple[int, ...]
    instance: bool
    """No item has two photos and there are no pairs: queries are augmented views of gallery
    photos (instance views)."""


def holdout_split(data: TrainData, holdout: float, seed: int) -> Split:
    """Hold out, seeded: `holdout` of the photos of each item that has several (a contiguous run
    in name order; at least one photo for `holdout` of those items when the share rounds to none;
    never an item's last photo); their views leave training and one view of each (the whole photo
    when indexed) queries the rest. And the pair photos of `holdout` of the paired items (they query all catalogue views).
    With neither, `holdout` of the views query as augmented copies (instance views)."""
    rng = np.random.default_rng(seed)
    photos: dict[str, dict[str, list[int]]] = {}
    for i, v in enumerate(data.views):
        photos.setdefault(v.item_id, {}).setdefault(v.photo, []).append(i)
    multi = sorted(item for item, p in photos.items() if len(p) >= 2)
    held_views: list[int] = []
    queries: list[int] = []
    lucky = set(rng.permutation(multi)[: max(1, round(len(multi) * holdout))].tolist())
    for item in multi:
        names = sorted(photos[item])
        k = min(len(names) - 1, int(len(names) * holdout)) or (1 if item in lucky else 0)
        # A contiguous run in name order (photos are named in shooting order: neighbours are
        # near-duplicates, so a scattered draw would test little but memory).
        first = int(rng.integers(0, len(names) - k + 1)) if k else 0
        for photo in names[first : first + k]:
            rows = photos[item][str(photo)]
            held_views.extend(rows)
            whole = [r for r in rows if not data.views[r].cutout]
            queries.append((whole or rows)[0])
    paired = sorted({w.item_id for w in data.wild})
    query_wild: list[int] = []
    if len(paired) >= 2:
        n = max(1, round(len(paired) * holdout))
        held_items = set(rng.permutation(paired)[:n].tolist())
        query_wild = [i for i, w in enumerate(data.wild) if w.item_id in held_items]
    instance = not queries and not query_wild
    if instance:
        n = max(1, round(len(data.views) * holdout))
        queries = sorted(rng.permutation(len(data.views))[:n].tolist())
    held = set(held_views)
    train = tuple(i for i in range(len(data.views)) if i not in held)
    qw = set(query_wild)
    train_wild = tuple(i for i in range(len(data.wild)) if i not in qw)
    return Split(train, train_wild, tuple(queries), tuple(query_wild), instance)


# --- batches and learning-rate schedule (research recipe v1: P items x 2 views, one-epoch
# warm-up, cosine decay) ----------------------------------------------------------------------


def schedule(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    span = max(1, total - warmup)
    return 0.5 * (1.0 + float(np.cos(np.pi * min(1.0, (step - warmup) / span))))


def fit_epochs(epoch: int, most: int, left: float, train_epoch: float, check: float) -> int:
    """The schedule's length once `epoch` epochs are done and `left` seconds of the budget remain,
    so that the cosine reaches 0 by the deadline instead of being cut by it: a further epoch costs
    its training (`train_epoch`, the mean so far) and its share of the held-out checks (`check`
    seconds each, run once at least twice their cost was trained since), and the last epoch's
    check is kept aside. Refitted after every epoch (the first is slow: kernels are chosen,
    memory first touched; a shared machine's speed moves), at most `most`, never before `epoch`."""
    every = max(1, int(np.ceil(2 * check / max(train_epoch, 1e-6))))
    more = int(max(0.0, left - check) / max(train_epoch + check / every, 1e-6))
    return max(epoch, min(most, epoch + more))


class PairBatches:
    """Batches of P items x 2 cached copies: two different views of the item when it has them,
    else two different copies of its one view (the self-supervised instance pair). Copies of
    training view j sit at rows j*A .. j*A+A-1 of the cache."""

    def __init__(
        self, view_items: Sequence[int], copies: int, batch: int, rng: np.random.Generator
    ) -> None:
        self.by_item: dict[int, list[int]] = {}
        for j, item in enumerate(view_items):
            self.by_item.setdefault(item, []).append(j)
        self.items = np.array(sorted(self.by_item))
        self.copies = copies
        self.per_batch = max(1, min(batch // 2, len(self.items)))
        self.rng = rng
        self.steps_per_epoch = max(1, -(-len(view_items) // (2 * self.per_batch)))

    def draw(self) -> np.ndarray:
        rng, a = self.rng, self.copies
        rows: list[int] = []
        for item in rng.choice(self.items, size=self.per_batch, replace=False):
            views = self.by_item[int(item)]
            if len(views) >= 2:
                v1, v2 = rng.choice(views, size=2, replace=False)
                rows += [int(v1) * a + int(rng.integers(a)), int(v2) * a + int(rng.integers(a))]
            else:
                c1, c2 = rng.choice(a, size=2, replace=a < 2)
                rows += [views[0] * a + int(c1), views[0] * a + int(c2)]
        return np.asarray(rows, dtype=np.int64)
