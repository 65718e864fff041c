"""The indexing pipeline of catalogue photos: read, hash and decode a photo into its views (on
decode threads, ahead of inference), embed the views, and make the points the store keeps.

`PhotoPipeline.embed_batch` is the one call a runner needs (`lookalike.engine.distributed` runs
it on Ray workers); the local runner overlaps decoding (threads) with inference (this thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image

from lookalike.config import Settings
from lookalike.engine.records import (
    EmbeddedBatch,
    Loaded,
    Stored,
    Task,
    View,
    item_payload,
    view_key,
)
from lookalike.errors import DecodeError
from lookalike.store.base import PointRecord, point_id
from lookalike.types import F32, Skipped

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.pipeline.decode import DecodeLimits

_LOOKAHEAD_BATCHES = 4
T = TypeVar("T")
R = TypeVar("R")


def read_ahead(load: Callable[[T], R], tasks: Iterable[T], window: int, name: str) -> Iterator[R]:
    """`load(task)` of every task on two worker threads (named `name`), yielded in order, at most
    `window` tasks ahead of the caller."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=name) as pool:
        pending: list[Future[R]] = []
        for task in tasks:
            pending.append(pool.submit(load, task))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


class LocalRunner:
    """The default `IndexRunner`: decoding on threads overlapped with inference, in this process."""

    def embedded(
        self, engine: Engine, tasks: Sequence[Task], existing: Mapping[tuple[str, str], Stored]
    ) -> Iterator[EmbeddedBatch]:
        return engine.pipeline.embedded(tasks, existing)


class PhotoPipeline:
    """Catalogue photos to views to vectors, with one engine's models and settings."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    def embed_batch(
        self,
        tasks: Sequence[Task],
        existing: Mapping[tuple[str, str], Stored],
        limits: DecodeLimits | None = None,
    ) -> EmbeddedBatch:
        """Load `tasks` one after the other (see `load`) and embed all their views in one call."""
        limits = limits if limits is not None else self.engine.decode_limits()
        loaded = [self.load(task, existing, limits) for task in tasks]
        views = [v for b in loaded for v in b.views]
        vectors, classes = self.embed(views)
        return loaded, vectors, classes

    def embedded(
        self, tasks: Sequence[Task], existing: Mapping[tuple[str, str], Stored]
    ) -> Iterator[EmbeddedBatch]:
        """The local runner: decode (threads, ahead) and embed (this thread), batch by batch."""
        for batch in self._batches(self._load_all(tasks, existing)):
            views = [v for b in batch for v in b.views]
            vectors, classes = self.embed(views)
            yield batch, vectors, classes

    def load(
        self, task: Task, existing: Mapping[tuple[str, str], Stored], limits: DecodeLimits
    ) -> Loaded:
        """Read, hash and (unless unchanged) decode one photo into its views, each with its
        embedder input when the embedder can `prepare` one. Never raises for a bad photo: it comes
        back `skipped` with the reason. Thread-safe."""
        from lookalike.pipeline.decode import content_hash, decode_image, read_source

        try:
            data = read_source(task.image, limits)
            sha = content_hash(data)
            prev = existing.get((task.item.id, task.image))
            if prev is not None and prev.content_hash == sha:
                if self.settings.views.ocr and not prev.read:
                    # OCR turned on for an indexed photo: read it, keep its vectors.
                    image = decode_image(data, task.image, limits)
                    return Loaded(task, sha, unchanged=True, words=self.read_words(image))
                return Loaded(task, sha, unchanged=True)
            image = decode_image(data, task.image, limits)
            return Loaded(task, sha, image=image, views=tuple(self.photo_views(image)))
        except DecodeError as exc:
            return Loaded(task, skipped=Skipped(task.image, str(exc)))
        except OSError as exc:
            return Loaded(task, skipped=Skipped(task.image, f"cannot read: {exc}"))

    def _load_all(
        self, tasks: Sequence[Task], existing: Mapping[tuple[str, str], Stored]
    ) -> Iterator[Loaded]:
        """Read, hash, decode and prepare on worker threads, in order, a bounded number of batches
        ahead of inference (which runs on the caller's thread meanwhile)."""
        limits = self.engine.decode_limits()
        self.engine.stages()  # load detector / isolator before the worker threads need them

        def load(task: Task) -> Loaded:
            return self.load(task, existing, limits)

        window = max(1, self.settings.models.batch_size) * _LOOKAHEAD_BATCHES
        return read_ahead(load, tasks, window, "decode")

    def _batches(self, loaded: Iterator[Loaded]) -> Iterator[list[Loaded]]:
        batch: list[Loaded] = []
        size = max(1, self.settings.models.batch_size)
        for entry in loaded:
            batch.append(entry)
            if sum(len(b.views) for b in batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def embed(self, views: Sequence[View]) -> tuple[F32, list[list[str]]]:
        """(N, dim) vectors of `views`, and each view's ImageNet class names when the embedder has
        a classifier head (same forward pass, so the attribute is free)."""
        from lookalike.pipeline.attributes import imagenet_class_names

        embedder = self.engine.embedder
        if not views:
            return np.zeros((0, embedder.dim), dtype=np.float32), []
        prepared = getattr(embedder, "embed_prepared", None)
        if prepared is not None and all(v.tensor is not None for v in views):
            top = 5 if self.settings.views.attributes else 0
            vectors, tops = prepared(
                np.stack([v.tensor for v in views if v.tensor is not None]), top=top
            )
            return vectors, [imagenet_class_names(t) if t else [] for t in tops]
        images = [v.image for v in views if v.image is not None]
        if len(images) != len(views):
            raise ValueError("views without a decoded image cannot be embedded here")
        with_classes = getattr(embedder, "embed_images_with_classes", None)
        if with_classes is None or not self.settings.views.attributes:
            return embedder.embed_images(images), [[] for _ in images]
        vectors, tops = with_classes(images)
        return vectors, [imagenet_class_names(t) for t in tops]

    def view_point(
        self, loaded: Loaded, view: View, vector: F32, classes: Sequence[str] = ()
    ) -> PointRecord:
        item, image = loaded.task.item, loaded.task.image
        payload = {
            **item_payload(item),
            "kind": "view",
            "image": image,
            "content_hash": loaded.sha256,
            "view_key": view.key,
            "box": list(view.box),
            "label": view.label,
            "det_score": view.score,
            "colours": list(view.colours),
            "classes": list(classes),
            "pending": True,  # hidden from searches until the item's centroid is written
        }
        if view.words is not None:
            payload["ocr_words"] = list(view.words)
        vectors = {"image": vector}
        projection = self.engine.stored_projection()
        if projection is not None:
            vectors["tuned"] = projection.apply(vector)
        return PointRecord(point_id(item.id, image, view.key), vectors, payload)

    # -- detection and isolation -----------------------------------------------------------------

    def photo_views(self, image: Image.Image) -> list[View]:
        """The views of one catalogue photo: each kept object (isolated as configured), and the
        whole photo. Runs on the decode threads."""
        from lookalike.pipeline.attributes import dominant_colours
        from lookalike.pipeline.views import views_for_image

        detector, isolator = self.engine.stages()
        prepare = getattr(self.engine.embedder, "prepare", None)
        words = self.read_words(image) if self.settings.views.ocr else None
        out = []
        for v in views_for_image(image, detector, isolator, self.engine.views):
            box, key = view_key(v, image)
            rgb = v.image.convert("RGB")
            colours = tuple(dominant_colours(rgb)) if self.settings.views.attributes else ()
            tensor = prepare(rgb) if prepare is not None else None
            out.append(
                View(key, tuple(box), v.label, float(v.score), rgb, colours, tensor, words)  # type: ignore[arg-type]  # box: 4 corners
            )
        return out

    def read_words(self, image: Image.Image) -> tuple[str, ...]:
        """The words printed on a catalogue photo: the cheap text detector first, the full OCR
        only where it finds text (about 1 s a photo on 2 cores); () when it finds none."""
        _gate, result = self.engine.text_reader().read_if_text(image)
        return result.words if result is not None else ()

    def training_views(self, source: str, *, query: bool = False) -> list[tuple[str, Image.Image]]:
        """(view key, RGB image) of each view indexing makes of one photo; with `query`, the one
        view a search of the photo uses first (key "query"). What `lookalike.learn` trains on and
        re-embeds, so training sees the pixels the index embeds. Raises DecodeError, OSError."""
        from lookalike.pipeline.decode import decode_image, read_source
        from lookalike.pipeline.views import views_for_image

        if query:
            photo = self.engine.decode_query(source)
            return [("query", self.engine.query_views(photo)[0].image.convert("RGB"))]
        limits = self.engine.decode_limits()
        image = decode_image(read_source(source, limits), source, limits)
        detector, isolator = self.engine.stages()
        return [
            (view_key(v, image)[1], v.image.convert("RGB"))
            for v in views_for_image(image, detector, isolator, self.engine.views)
        ]
