"""Text in searches: words typed with a query (BM25 over the items' words, fused with the
embedder's text tower by reciprocal rank fusion) and words read on a query photo (OCR) that
re-order its image hits."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from PIL import Image

from lookalike.engine.part import EnginePart
from lookalike.engine.records import SEARCH_TEXT, SearchResult, product_hit
from lookalike.errors import QueryError
from lookalike.store.base import Condition, Filter, where
from lookalike.types import ProductHit

if TYPE_CHECKING:
    from lookalike.engine.core import Engine
    from lookalike.pipeline.text_match import ItemTextIndex, TextMatchSettings

FUSION_DEPTH = 50
"""How many results of each ranking go into a fusion."""
RRF_K = 60
"""Reciprocal rank fusion constant (Cormack et al. 2009): rank r contributes 1 / (RRF_K + r)."""
TEXT_TOP_N = 10
"""Query text re-orders this many image candidates (chosen on held-out catalogue photos)."""
TEXT_SIZE_POWER = 1.0
"""Query words count by their letter height relative to the tallest line, to this power (the
product held to the camera has the largest print; chosen on held-out catalogue photos)."""


def rrf(rankings: Sequence[Sequence[ProductHit]], k: int) -> list[ProductHit]:
    """Reciprocal rank fusion of rankings of items: score = sum over rankings of 1/(RRF_K + rank)."""
    scores: dict[str, float] = {}
    first: dict[str, ProductHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.item_id] = scores.get(hit.item_id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(hit.item_id, hit)
    order = sorted(scores, key=lambda i: -scores[i])[:k]
    return [dataclasses.replace(first[i], score=scores[i]) for i in order]


class TextFusion(EnginePart):
    """One engine's text searches, and the OCR words of its index (cached until it is written)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._text_index: ItemTextIndex | Literal[False] | None = None
        self._last_read: (
            tuple[Image.Image, tuple[tuple[str, ...], dict[str, float] | None]] | None
        ) = None

    def forget(self) -> None:
        """The index was written: read its words again on next use."""
        self._text_index = None

    def text_index(self) -> ItemTextIndex | None:
        """`ItemTextIndex` of the OCR words stored with the views (one entry per photo); None
        when no photo of the index was OCR'd. Cached until the index is written again."""
        if self._text_index is None:
            from lookalike.pipeline.text_match import ItemTextIndex

            index = ItemTextIndex()
            any_read = False
            for rec in self.engine.store.scroll(
                where("kind", "view"), fields=["item_id", "view_key", "ocr_words"]
            ):
                if rec.payload.get("view_key") != "full":  # one entry per photo
                    continue
                words = rec.payload.get("ocr_words")
                any_read |= words is not None
                index.add(str(rec.payload["item_id"]), words or ())
            self._text_index = index if any_read else False
        return self._text_index or None

    def text_settings(self) -> TextMatchSettings:
        from lookalike.pipeline.text_match import TextMatchSettings

        return TextMatchSettings(
            weight=self.engine.settings.search.text_weight,
            size_power=TEXT_SIZE_POWER,
            top_n=TEXT_TOP_N,
        )

    def fuse_text(
        self, photo: Image.Image, hits: Sequence[ProductHit]
    ) -> tuple[list[ProductHit], bool]:
        """`hits` (image ranking of `photo`) re-ordered by the words read on the photo, and
        whether it was read (see `settings.text_fusion`). For evaluations: `search` does this."""
        fused = self.fuse_query_text(photo, list(hits), {})
        return (fused, True) if fused is not None else (list(hits), False)

    def fuse_query_text(
        self, photo: Image.Image, hits: list[ProductHit], timings: dict[str, float]
    ) -> list[ProductHit] | None:
        """Image hits re-ordered by the words read on the query, or None when the index has no
        OCR words or fewer than half of the first 5 candidates carry text (the query is then
        not read: OCR costs about 1 s)."""
        from lookalike.pipeline.text_match import fuse

        index = self.text_index()
        if index is None or not hits or not index.should_read([h.item_id for h in hits[:5]]):
            return None
        from lookalike.pipeline.ocr import token_weights

        t = time.perf_counter()
        tm = self.text_settings()
        if self._last_read is not None and self._last_read[0] is photo:
            words, weights = self._last_read[1]
        else:
            read = self.engine.text_reader().read(photo)
            words = read.words
            weights = token_weights(read.lines, read.boxes, tm.size_power) if read.boxes else None
            self._last_read = (photo, (words, weights))
        timings["ocr"] = (time.perf_counter() - t) * 1e3
        evidence = index.score(words, [h.item_id for h in hits[: tm.top_n]], tm, weights)
        order = fuse([(h.item_id, h.score) for h in hits], evidence, tm)
        by_id = {h.item_id: h for h in hits}
        return [dataclasses.replace(by_id[i], score=s) for i, s in order]

    def search_text(
        self,
        text: str,
        *,
        k: int = 5,
        where: str | Filter | None = None,
        exclude: Sequence[str] = (),
    ) -> SearchResult:
        """Items matching words: BM25 over each item's catalogue words and automatic attributes;
        with a CLIP-family embedder also its text tower, the two rankings fused (RRF)."""
        if not text.strip():
            raise QueryError("empty text query")
        t0 = time.perf_counter()
        depth = max(k, FUSION_DEPTH)
        words = self.text_hits(text, depth, where, exclude)
        embed_texts = getattr(self.engine.embedder, "embed_texts", None)
        if embed_texts is None:
            hits, kind = words[:k], "bm25"
        else:
            vector = embed_texts([text])[0]
            semantic = self.engine.search_vector(vector, k=depth, where=where, exclude=exclude)
            hits, kind = rrf([semantic, words], k), "rrf"
        timings = {"search": (time.perf_counter() - t0) * 1e3}
        return SearchResult(tuple(hits), timings, "centroid", kind)

    def text_hits(
        self, text: str, limit: int, where: str | Filter | None, exclude: Sequence[str]
    ) -> list[ProductHit]:
        user = self.engine.user_filter(where)
        flt = Filter((Condition("kind", "eq", "centroid"),)) & user
        if exclude:
            flt = flt & Filter((Condition("item_id", "not_in", tuple(exclude)),))
        hits = self.engine.store.text_search(SEARCH_TEXT, text, limit=limit, flt=flt)
        return [product_hit(h.item_id, h.score, h.payload) for h in hits]
