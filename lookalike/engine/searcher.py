"""Searching: a query photo becomes its view and vector (test-time augmentation included), the
vector is searched among the items' centroids or their views (routed by a predicted field when
asked), and the hits are judged by the index's calibrated match levels."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from lookalike.engine import wiring
from lookalike.engine.part import EnginePart
from lookalike.engine.records import (
    ALL_VIEWS,
    INTERNAL_KEYS,
    VISIBLE_VIEWS,
    QueryObject,
    SearchResult,
    product_hit,
    query_object,
)
from lookalike.engine.textfusion import FUSION_DEPTH, TextFusion, rrf
from lookalike.errors import QueryError
from lookalike.store.base import Condition, Filter, point_id
from lookalike.types import F32, Aggregation, Box, JSONValue, ProductHit

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.pipeline.detect import Detection
    from lookalike.pipeline.views import ObjectView


class Searcher(EnginePart):
    """One engine's searches by photo, vector and item."""

    def __init__(self, engine: Engine, texts: TextFusion) -> None:
        super().__init__(engine)
        self.texts = texts

    def embed_query(self, image: Image.Image) -> F32:
        return self.engine.embedder.embed_images([image.convert("RGB")])[0]

    def search(
        self,
        query: Path | str | bytes | Image.Image,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
        box: Box | Sequence[float] | None = None,
        exclude: Sequence[str] = (),
        text: str | None = None,
    ) -> SearchResult:
        """The `k` items most like the photo, one result per item, best first.

        box: search with this region of the photo only (x1, y1, x2, y2 in pixels of the decoded,
        EXIF-rotated photo); clipped to the photo; an empty region is a QueryError. Without a box,
        an index built with detection searches with the query's most relevant object (reported in
        `query_object`), or the whole photo when nothing relevant is found.
        exclude: item ids left out of the results (e.g. the item a "more like this" started from).
        text: words to combine with the photo ("this, but in red"): the image ranking and the text
        ranking (`search_text`) are fused by reciprocal rank fusion.

        where: a filter expression (`category = 'Milk' and price < 100`) or a `Filter`; it is
        applied inside the vector search, so `k` results come back whenever `k` items match.
        """
        _ = self.engine.store  # no index: say so before any work on the photo
        t0 = time.perf_counter()
        photo = self.decode_query(query)
        detector, _ = self.engine.stages()
        detections = detector.detect(photo) if detector is not None else ()
        view = self.query_views(photo, box=box, detections=detections)[0]
        objects = self.detected_objects(photo, detections)
        t1 = time.perf_counter()
        vector = self.query_vector(view.image)
        t2 = time.perf_counter()
        timings = {"decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3}
        kind = "cosine"
        if text:
            depth = max(k, FUSION_DEPTH)
            image_hits = self.judged(
                self.search_vector(vector, k=depth, where=where, mode=mode, exclude=exclude), mode
            )
            text_hits = self.texts.text_hits(text, depth, where, exclude)
            hits, kind = rrf([image_hits, text_hits], k), "rrf"
        else:
            tm = self.texts.text_settings()
            fusing = self.engine.settings.search.text_fusion and self.texts.text_index() is not None
            depth = max(k, tm.top_n) if fusing else k
            hits = self.search_vector(vector, k=depth, where=where, mode=mode, exclude=exclude)
            hits = self.judged(hits, mode)
            t3 = time.perf_counter()
            fused = self.texts.fuse_query_text(photo, hits, timings) if fusing else None
            timings["search"] = (t3 - t2) * 1e3
            if fused is not None:
                hits, kind = fused, "cosine+text"
            hits = hits[:k]
        timings.setdefault("search", (time.perf_counter() - t2) * 1e3)
        return SearchResult(
            tuple(hits),
            timings,
            mode or self.engine.settings.search.mode,
            kind,
            query_object(view, photo, self.engine.views),
            objects,
        )

    def query_vector(self, image: Image.Image) -> F32:
        """The query's embedder vector: with `settings.tta`, the normalised mean over the photo
        and its augmentations (one batch)."""
        return self.embed_queries([image])[0]

    def embed_queries(self, images: Sequence[Image.Image]) -> F32:
        """(N, D) embedder vectors of query photos, with the `settings.tta` augmentation: each
        the normalised mean of the photo's and its variants' vectors (1-4 embeddings a photo)."""
        rgb = [im.convert("RGB") for im in images]
        if self.engine.settings.search.tta == "none":
            return self.engine.embedder.embed_images(rgb)
        from lookalike.pipeline.embed import tta_embed

        if not rgb:
            return np.zeros((0, self.engine.embedder.dim), np.float32)
        return np.concatenate(
            [
                tta_embed(self.engine.embedder.embed_images, im, self.engine.settings.search.tta)
                for im in rgb
            ]
        )

    def search_objects(
        self,
        query: Path | str | bytes | Image.Image,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
    ) -> list[SearchResult]:
        """Results per detected object of the photo (like object chips), most relevant object
        first; the whole photo when the index has no detection or nothing relevant is found."""
        _ = self.engine.store
        t0 = time.perf_counter()
        photo = self.decode_query(query)
        views = self.query_views(photo, all_objects=True)
        # As `search` embeds its one view (TTA included): the same object scores the same.
        vectors = self.embed_queries([v.image for v in views])
        per_object_ms = (time.perf_counter() - t0) * 1e3 / max(1, len(views))
        out = []
        for view, vector in zip(views, vectors, strict=True):
            t = time.perf_counter()
            hits = self.judged(self.search_vector(vector, k=k, where=where, mode=mode), mode)
            timings = {"embed": per_object_ms, "search": (time.perf_counter() - t) * 1e3}
            out.append(
                SearchResult(
                    tuple(hits), timings, mode or self.engine.settings.search.mode, "cosine",
                    query_object(view, photo, self.engine.views),
                )
            )  # fmt: skip
        return out

    def detected_objects(
        self, photo: Image.Image, detections: Sequence[Detection] | None = None
    ) -> tuple[QueryObject, ...]:
        """The relevant objects of a query photo, for a UI to offer as regions to search
        (`detections`: the detector's answer when the caller already has it)."""
        detector, _ = self.engine.stages()
        if detector is None:
            return ()
        from lookalike.pipeline.views import kept_objects, shown_label

        found = detector.detect(photo) if detections is None else detections
        kept = kept_objects(found, photo.size, self.engine.views)
        return tuple(
            QueryObject(shown_label(d.label, self.engine.views), tuple(d.box.as_list()), d.score)  # type: ignore[arg-type]  # as_list() gives the 4 corners
            for d in kept
        )

    def query_views(
        self,
        photo: Image.Image,
        *,
        box: Box | Sequence[float] | None = None,
        all_objects: bool = False,
        detections: Sequence[Detection] | None = None,
    ) -> list[ObjectView]:
        """The `ObjectView`s a query photo searches with under this index's view settings, the
        one `search` uses first (see `lookalike.pipeline.isolate.query_views`).
        """
        from lookalike.pipeline.views import query_views

        detector, isolator = self.engine.stages()
        return query_views(
            photo,
            detector,
            isolator,
            self.engine.views,
            box=box,
            all_objects=all_objects,
            detections=detections,
        )

    def similar(
        self,
        item_id: str,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
    ) -> SearchResult:
        """More like this: items nearest to an indexed item's centroid, the item itself excluded."""
        t0 = time.perf_counter()
        hits = self.search_vector(
            self.item_vector(item_id), k=k, where=where, mode=mode, exclude=[item_id]
        )
        hits = self.judged(hits, mode)
        timings = {"search": (time.perf_counter() - t0) * 1e3}
        return SearchResult(tuple(hits), timings, mode or self.engine.settings.search.mode)

    def recommend(
        self,
        positive: Sequence[str],
        negative: Sequence[str] = (),
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
    ) -> SearchResult:
        """More like `positive` items, less like `negative` ones (`recommend_vector`): the
        items nearest to the positives' mean centroid pushed away from the negatives', every
        example left out. QueryError for an unknown item or no positive example."""
        t0 = time.perf_counter()
        vector = recommend_vector(
            [self.item_vector(i) for i in positive],
            [self.item_vector(i) for i in negative],
        )
        examples = list(dict.fromkeys([*positive, *negative]))
        hits = self.search_vector(vector, k=k, where=where, mode=mode, exclude=examples)
        hits = self.judged(hits, mode)
        timings = {"search": (time.perf_counter() - t0) * 1e3}
        return SearchResult(tuple(hits), timings, mode or self.engine.settings.search.mode)

    def decode_query(self, query: Path | str | bytes | Image.Image) -> Image.Image:
        """A query photo decoded (RGB) under the settings' size limits."""
        from lookalike.pipeline.decode import decode_query

        return decode_query(query, wiring.limits(self.engine.settings))

    def search_vector(
        self,
        vector: F32,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        mode: Aggregation | None = None,
        exclude: Sequence[str] = (),
        route: str | None = None,
    ) -> list[ProductHit]:
        """Items nearest to `vector`. `route`: a catalogue field (e.g. `category`): first predict
        the query's value of it from its nearest views, then search only items that have it."""
        mode = mode or self.engine.settings.search.mode
        if k < 1:
            raise QueryError("k must be at least 1")
        user = self.engine.user_filter(where)
        if route:
            predicted = self.predict_field(vector, route, where=user)
            if predicted is not None:
                user = Filter((Condition(route, "eq", predicted),)) & user
        if exclude:
            user = Filter((Condition("item_id", "not_in", tuple(exclude)),)) & user
        vector, using = self.search_space(vector)
        if mode == "views":
            flt = self.visible_views() & user
            hits = self.engine.store.search_groups(vector, using=using, groups=k, flt=flt)
        elif mode == "centroid":
            flt = Filter((Condition("kind", "eq", "centroid"),)) & user
            hits = self.engine.store.search(vector, using=using, limit=k, flt=flt)
        else:
            raise QueryError(f"unknown mode {mode!r}; use 'views' or 'centroid'")
        return [product_hit(h.item_id, h.score, h.payload) for h in hits]

    def visible_views(self) -> Filter:
        """The views a search may see: not those being written (`VISIBLE_VIEWS`), unless the
        index's flags predate their being cleared (manifest `visibility` 0: every view)."""
        if self.engine.manifest is not None and self.engine.manifest.visibility < 1:
            return ALL_VIEWS
        return VISIBLE_VIEWS

    def judged(self, hits: list[ProductHit], mode: Aggregation | None) -> list[ProductHit]:
        """Image hits labelled "same product", "similar" or "no close match" by the index's
        calibrated levels for the space searched and the mode (unchanged without levels)."""
        from lookalike.engine.calibration import calibration_levels

        space = "tuned" if self.engine.projection is not None else "image"
        levels = (
            calibration_levels(self.engine)
            .get(space, {})
            .get(mode or self.engine.settings.search.mode)
        )
        if levels is None:
            return hits
        return [dataclasses.replace(h, match=levels.match(h.score)) for h in hits]

    def search_space(self, vector: F32) -> tuple[F32, str]:
        """(vector, named vector to search): an embedder vector is projected and searched among
        the `tuned` vectors when the index has a projection and the `tuned` setting is on."""
        projection = self.engine.projection
        vector = np.asarray(vector, dtype=np.float32)
        if projection is not None and vector.shape[-1] == projection.d_in:
            return projection.apply(vector), "tuned"
        return vector, "image"

    def predict_field(
        self, vector: F32, field_name: str, *, where: Filter | None = None, neighbours: int = 15
    ) -> JSONValue:
        """The value of `field_name` most supported by the `neighbours` nearest views (votes
        weighted by similarity); None when no neighbour has the field."""
        flt = self.visible_views() & where
        votes: dict[JSONValue, float] = {}
        vector, using = self.search_space(vector)
        for hit in self.engine.store.search(vector, using=using, limit=neighbours, flt=flt):
            value = hit.payload.get(field_name)
            if value is not None and not isinstance(value, list):
                votes[value] = votes.get(value, 0.0) + max(hit.score, 0.0)
        return max(votes, key=lambda v: votes[v]) if votes else None

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An indexed item: its catalogue fields and the images of its views; None if unknown."""
        conditions = [Condition("item_id", "eq", item_id)]
        if self.visible_views() is not ALL_VIEWS:  # not the views of a photo being added
            conditions.append(Condition("pending", "ne", True))
        views = list(self.engine.store.scroll(Filter(tuple(conditions))))
        if not views:
            return None
        fields: dict[str, Any] = {}
        images: list[str] = []
        for rec in views:
            if rec.payload.get("kind") == "view":
                images.append(str(rec.payload.get("image", "")))
            fields.update({k: v for k, v in rec.payload.items() if k not in INTERNAL_KEYS})
        return {"item_id": item_id, "fields": fields, "images": sorted(set(images))}

    def item_vector(self, item_id: str) -> F32:
        """The item's centroid vector (mean of its views), for "more like this"."""
        recs = self.engine.store.retrieve([point_id(item_id, "centroid")], with_vectors=True)
        if not recs:
            raise QueryError(f"no item {item_id!r} in {self.engine.index_dir}")
        return recs[0].vectors["image"]


NEGATIVE_WEIGHT = 0.5


def recommend_vector(positive: Sequence[F32], negative: Sequence[F32] = ()) -> F32:
    """The unit query vector for `positive` and `negative` example vectors: "more like these, less
    like those".

    The idea of Qdrant's recommend API (`average_vector` strategy): the query is the mean of the
    positive examples' vectors pushed away from the mean of the negative ones,
    `mean(positive) - NEGATIVE_WEIGHT * mean(negative)`, normalised. With 0.5 this is Qdrant's
    `avg_pos + (avg_pos - avg_neg)` up to scale, which is what a cosine search sees. The engine
    searches with it like with any vector, leaving the examples themselves out of the results.
    QueryError without a positive example, or when the examples cancel out (nothing left to
    search with)."""
    if not positive:
        raise QueryError("give at least one positive example (an item to find more like)")
    query = np.mean(np.asarray(positive, dtype=np.float32), axis=0)
    if negative:
        query = query - NEGATIVE_WEIGHT * np.mean(np.asarray(negative, dtype=np.float32), axis=0)
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm < 1e-6:
        raise QueryError("the positive and negative examples cancel out: nothing to search for")
    return (query / norm).astype(np.float32)
