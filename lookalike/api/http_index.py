"""Index information routes of the HTTP API: statistics, facet counts and liveness."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from lookalike.api.http_faces import face_index_stats
from lookalike.api.http_schemas import HealthOut
from lookalike.api.http_state import AppState
from lookalike.errors import LookalikeError, QueryError


def index_router(state: AppState) -> APIRouter:
    """`/api/stats`, `/api/facets` and `/healthz` over `state`."""
    router = APIRouter()

    # -- information -----------------------------------------------------------------------------

    @router.get("/api/stats", tags=["index"])
    async def stats() -> dict[str, Any]:
        """Items, views, model, index size and filterable fields (name -> keyword/float/bool)."""
        return await state.read(index_stats, state)

    @router.get("/api/facets", tags=["index"])
    async def facets(
        field: Annotated[str, Query(description="A keyword field (see /api/stats `fields`).")],
        where: Annotated[str | None, Query()] = None,
        filters: Annotated[str | None, Query(description="Structured filters (JSON).")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        """Values of `field` and how many items have each, among the items matching the filters."""
        return await state.read(facet_counts, state, field, where, filters, limit)

    @router.get("/healthz", response_model=HealthOut, tags=["index"])
    async def healthz() -> dict[str, Any]:
        """Liveness: answers at once, even while searches run."""
        return {"status": "ok", "ready": state.ready}

    return router


def index_stats(state: AppState) -> dict[str, Any]:
    state.warm_up()
    faces = _face_count(state)
    if state.engine.manifest is None and faces:  # a folder of faces only (`faces index`)
        info: dict[str, Any] = {"items": 0, "views": 0, "fields": {}}
    else:
        info = state.engine.stats()  # no index at all: StoreError, a 503
    embedder = state.engine.embedder
    info.pop("index", None)  # the server's folder layout is nobody's business
    info.update(
        text_tower=callable(getattr(embedder, "embed_texts", None)),
        auth_required=state.api_key is not None,
        writable=state.access.enabled,
        max_upload_bytes=state.max_upload_bytes,
        mode=state.engine.settings.search.mode,
        faces=faces,
    )
    return info


def _face_count(state: AppState) -> int:
    """Faces in the face index, 0 without one (the page offers "Find people" only then)."""
    try:
        return int(face_index_stats(state)["faces"])
    except LookalikeError:
        return 0


def facet_counts(
    state: AppState, field: str, where: str | None, filters: str | None, limit: int
) -> dict[str, Any]:
    from lookalike.store.filters import combined_filter

    kinds = state.engine.fields()
    if field not in kinds:
        known = ", ".join(sorted(kinds)) or "none"
        raise QueryError(f"no filterable field {field!r}; the index has: {known}")
    if kinds[field] != "keyword":
        raise QueryError(f"{field} is a {kinds[field]} field; facets are for keyword fields")
    counts = state.engine.facets(field, where=combined_filter(where, filters), limit=limit)
    values = [{"value": v, "count": n} for v, n in counts.items()]
    return {"field": field, "values": values}
