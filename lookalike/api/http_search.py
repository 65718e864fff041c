"""Search routes of the HTTP API: by photo (or a region of it, or a photo and words), by words,
"more like this" and recommendations. Searches run on worker threads, at most `search_threads` at
once (`AppState.run_search`)."""

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from starlette.exceptions import HTTPException

from lookalike.api.http_schemas import (
    MAX_K,
    NO_SUCH_ITEM,
    Mode,
    RecommendIn,
    SearchOut,
    TextSearchIn,
)
from lookalike.api.http_state import AppState
from lookalike.api.results import search_out
from lookalike.errors import QueryError

if TYPE_CHECKING:
    from lookalike.engine.records import SearchResult
    from lookalike.store.base import Filter


def search_router(state: AppState) -> APIRouter:
    """The search endpoints over `state`."""
    router = APIRouter()

    @router.post("/api/search", response_model=SearchOut, tags=["search"])
    async def search_photo(
        photo: Annotated[
            UploadFile | None,
            File(description="The query photo (JPEG, PNG, WebP, HEIC ...); or give `url`."),
        ] = None,
        url: Annotated[
            str | None,
            Form(
                max_length=2048,
                description="Instead of `photo`: an http(s) URL of the query photo, downloaded "
                "by the server as added items' image URLs are (public addresses only, every "
                "redirect checked, whole-download deadline).",
            ),
        ] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K, description="Number of items.")] = 10,
        box: Annotated[
            str | None, Form(description="Search this region only: 'x1,y1,x2,y2'.")
        ] = None,
        box_units: Annotated[
            Literal["px", "fraction"],
            Form(
                description="`px`: pixels of the photo as uploaded (EXIF-rotated); "
                "`fraction`: 0 to 1 of its width and height."
            ),
        ] = "px",
        where: Annotated[
            str | None, Form(description="Filter, e.g. \"category = 'Milk' and price < 100\".")
        ] = None,
        filters: Annotated[
            str | None, Form(description='JSON, e.g. {"category": ["Milk"], "price": {"lt": 100}}.')
        ] = None,
        mode: Annotated[Mode | None, Form(description="centroid or views.")] = None,
        text: Annotated[
            str | None,
            Form(
                max_length=1000,
                description='Words to combine with the photo ("this, but in red"): the photo '
                "and word rankings are fused (score_kind `rrf`).",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """The `k` items most like the photo (or a region of it), best first, one per item."""
        from lookalike.api.remote_images import fetch_image

        if (photo is None) == (not url or not url.strip()):
            raise QueryError("give the query photo as `photo` (a file) or `url`, not both")
        if photo is not None:
            data = await state.read_upload(photo)
        else:
            data = await fetch_image((url or "").strip(), state.writer.policy)
        return await state.run_search(
            photo_results, state, data, k, box, box_units, where, filters, mode, text
        )

    @router.post("/api/search/text", response_model=SearchOut, tags=["search"])
    async def search_text(body: TextSearchIn) -> dict[str, Any]:
        """Items matching words: BM25 over each item's catalogue text and automatic attributes
        (colours, classes); with a CLIP-family model also its text tower, the rankings fused."""
        return await state.run_search(text_results, state, body)

    async def similar(
        item_id: str,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        where: Annotated[str | None, Query(description="Filter expression.")] = None,
        filters: Annotated[str | None, Query(description="Structured filters (JSON).")] = None,
        mode: Annotated[Mode | None, Query()] = None,
    ) -> dict[str, Any]:
        """More like this: the items closest to `item_id` (the item itself left out)."""
        return await state.run_search(similar_results, state, item_id, k, where, filters, mode)

    @router.post(
        "/api/recommend",
        response_model=SearchOut,
        tags=["search"],
        responses=NO_SUCH_ITEM,
    )
    async def recommend(body: RecommendIn) -> dict[str, Any]:
        """More like the `positive` items, less like the `negative` ones: the mean of the
        positives' vectors pushed away from the negatives' mean (Qdrant's recommend idea),
        every example left out of the results."""
        return await state.run_search(recommend_results, state, body)

    router.get(
        "/api/similar/{item_id}", response_model=SearchOut, tags=["search"], responses=NO_SUCH_ITEM
    )(similar)
    router.post(
        "/api/similar/{item_id}",
        operation_id="similar_post",
        response_model=SearchOut,
        tags=["search"],
        responses=NO_SUCH_ITEM,
    )(similar)
    return router


def photo_results(
    state: AppState,
    data: bytes,
    k: int,
    box: str | None,
    box_units: str,
    where: str | None,
    filters: str | None,
    mode: Mode | None,
    text: str | None = None,
) -> dict[str, Any]:
    flt = ready_filter(state, where, filters)
    t0 = time.perf_counter()
    # A box in pixels refers to the photo as uploaded: decode at full size so the numbers
    # mean what the client meant (large JPEGs are otherwise decoded at a reduced size).
    image = state.decode(data, full_size=bool(box and box.strip()) and box_units == "px")
    decode_ms = (time.perf_counter() - t0) * 1e3
    pixels = parse_box(box, box_units, image.size)
    result = state.engine.search(
        image,
        k=k,
        where=flt,
        mode=mode,
        box=pixels,
        text=text.strip() if text and text.strip() else None,
    )
    timings = {**result.timings_ms, "decode": decode_ms}
    used_box = None if pixels is None else searched_box(pixels, image.size)
    objects = [{"box": list(o.box), "label": o.label, "score": o.score} for o in result.objects]
    out = search_out(
        state.images,
        result.hits,
        k,
        result.mode,
        timings,
        score_kind=result.score,
        objects=objects,
        query={"width": image.size[0], "height": image.size[1], "box": used_box},
    )
    qo = result.query_object
    if qo is not None:
        out["query_object"] = {"box": list(qo.box), "label": qo.label, "score": qo.score}
    return out


def text_results(state: AppState, body: TextSearchIn) -> dict[str, Any]:
    flt = ready_filter(state, body.where, body.filters)
    result = state.engine.search_text(body.text, k=body.k, where=flt)
    return hits_out(state, result, body.k)


def similar_results(
    state: AppState,
    item_id: str,
    k: int,
    where: str | None,
    filters: str | None,
    mode: Mode | None,
) -> dict[str, Any]:
    flt = ready_filter(state, where, filters)
    known(state, [item_id])
    result = state.engine.similar(item_id, k=k, where=flt, mode=mode)
    return hits_out(state, result, k)


def recommend_results(state: AppState, body: RecommendIn) -> dict[str, Any]:
    flt = ready_filter(state, body.where, body.filters)
    known(state, [*body.positive, *body.negative])
    result = state.engine.recommend(
        body.positive,
        body.negative,
        k=body.k,
        where=flt,
        mode=body.mode,
    )
    return hits_out(state, result, body.k)


def ready_filter(
    state: AppState, where: str | None, filters: Mapping[str, Any] | str | None
) -> "Filter | None":
    """The engine warmed up, and the filter of a request (`where` and/or `filters`)."""
    from lookalike.store.filters import combined_filter

    state.warm_up()
    return combined_filter(where, filters)


def known(state: AppState, item_ids: list[str]) -> None:
    """404 for the first of `item_ids` that is not indexed (one point each: tells "unknown item"
    from other errors)."""
    for item_id in dict.fromkeys(item_ids):
        try:
            state.engine.item_vector(item_id)
        except QueryError:
            raise HTTPException(404, f"no item {item_id!r} in this index") from None


def hits_out(state: AppState, result: "SearchResult", k: int) -> dict[str, Any]:
    """The answer to a search without a photo (no query size, no objects)."""
    return search_out(
        state.images, result.hits, k, result.mode, result.timings_ms, score_kind=result.score
    )


def parse_box(text: str | None, units: str, size: tuple[int, int]) -> list[float] | None:
    """`"x1,y1,x2,y2"` -> pixels of the decoded photo. `units`: `px` or `fraction` (0 to 1)."""
    if text is None or not text.strip():
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise QueryError(f"box must be four numbers 'x1,y1,x2,y2', got {text!r}")
    if units == "fraction":
        if not all(-1e-6 <= v <= 1 + 1e-6 for v in values):
            raise QueryError(f"a fraction box takes numbers from 0 to 1, got {text!r}")
        w, h = size
        return [values[0] * w, values[1] * h, values[2] * w, values[3] * h]
    return values


def searched_box(pixels: list[float], size: tuple[int, int]) -> list[float]:
    """The box as searched: clipped to the photo of `size` (width, height), corners in order."""
    w, h = size
    xs = sorted(min(max(v, 0.0), w) for v in pixels[0::2])
    ys = sorted(min(max(v, 0.0), h) for v in pixels[1::2])
    return [xs[0], ys[0], xs[1], ys[1]]
