"""HTTP API and web page: a thin FastAPI layer over `Engine`. OpenAPI documentation at `/docs`.

    POST   /api/search            multipart photo [+ k, box, box_units, text, where, filters, mode]
    POST   /api/search/text       JSON {text, k, where, filters}: words (BM25 over the catalogue's
                                  text and automatic attributes, fused with the text tower of
                                  CLIP-family models)
    GET    /api/similar/{id}      "more like this": the item's neighbours, the item itself excluded
    POST   /api/similar/{id}      the same, for clients that prefer POST
    GET    /api/items/{id}        one item: fields and image URLs
    POST   /api/items             add or replace an item (JSON, or multipart with photos)  [API key]
    DELETE /api/items/{id}        remove an item (and its uploads)                         [API key]
                                  Without --api-key writes are off (403): `http_state.WriteAccess`.
    GET    /api/images/{path}     a catalogue image (only files the index records) [?size=N thumbnail]
    GET    /api/stats             items, views, model, index size, filterable fields
    GET    /api/facets?field=...  value -> number of items, for a keyword field
    POST   /api/faces/search      multipart photo (a selfie) [+ face, threshold, maybe_threshold,
                                  k]: "you" and "maybe you" tiers of the indexed
                                  photos that contain that person (409 lists the faces to pick
                                  from when the selfie has several; 422 when it has none)
    GET    /api/faces/photos/{path}  a photo of the face index (only those) [?size=N thumbnail]
    GET    /api/faces/stats       photos and faces in the face index
    GET    /healthz               liveness; never touches the model or the store
    GET    /                      the web page (static files from `lookalike/api/web/`)

Contracts:
- Inference, decoding and store calls run on worker threads (anyio), never on the event loop, so
  `/healthz` and other requests are served while searches run. Searches share one engine (ONNX
  Runtime sessions and the Qdrant Edge shard allow concurrent calls); writes (index, delete) are
  serialised by one lock, since the engine's file lock refuses a second writer even in-process.
  What an add downloads and decodes happens before the lock (`api/item_writes.py`); image URLs
  are fetched under the crawler's address checks with a whole-download deadline
  (`api/remote_images.py`); a write whose client has gone is dropped (`item_writes.WriteGate`).
- Files served (`/api/images`, `/api/faces/photos`) must be listed by the index and lie, links
  resolved at request time, in an allowed folder (`api/served_files.py`); answers name files
  without the server's absolute paths.
- Errors are JSON `{"detail": "<message for people>", "error": "<kind>"}`: LookalikeError subclasses
  map to 4xx/5xx by type (`http_errors`), malformed requests to 422, a body larger than the limit
  to 413, a photo that is not an image to 415, a decompression bomb or corrupt photo to 422.
- Filters: `where` is an expression (`category = 'Milk' and price < 100`, see
  `lookalike.store.filters`); `filters` is JSON `{field: value | [values] | {"gte": .., "lt": ..}}`;
  both may be given and must then both hold.

Modules: this one wires the app (`create_app`); `http_schemas` (pydantic models of the edge),
`http_errors` (errors as JSON, the body limit), `http_state` (`AppState`, what the endpoints
share), `served_files` (served images, thumbnails), and the routes by concern: `http_search`,
`http_items`, `http_faces` (people too), `jobs`, and here `index_router` (statistics,
facet counts, liveness); `results` serialises search results (for the CLI's `--json` too);
`lookalike.store.filters` parses both filter syntaxes; `lookalike.catalog.manifest` builds items
from their JSON.

Heavy modules (numpy, Pillow, the engine) are imported inside functions: importing this module stays
cheap, so `lookalike --help` stays instant.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from lookalike.api.http_errors import (
    DEFAULT_MAX_UPLOAD,
    FORM_OVERHEAD,
    BodyLimit,
    MiB,
    install_error_handlers,
)
from lookalike.api.http_faces import face_index_stats, faces_router
from lookalike.api.http_items import item_out, items_router
from lookalike.api.http_schemas import ERROR_RESPONSES, HealthOut
from lookalike.api.http_search import search_router
from lookalike.api.http_state import AppState, WriteAccess
from lookalike.errors import LookalikeError, QueryError

if TYPE_CHECKING:
    from lookalike.api.remote_images import FetchPolicy
    from lookalike.engine.core import Engine
    from lookalike.faces.index import FaceIndex

__all__ = ["DEFAULT_MAX_UPLOAD", "FORM_OVERHEAD", "WEB_DIR", "MiB", "create_app"]

WEB_DIR = Path(__file__).with_name("web")
"""The static page: index.html, app.js, style.css (no build step)."""


def create_app(
    engine: "Engine",
    *,
    api_key: str | None = None,
    read_only: bool = False,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    catalogue_root: Path | None = None,
    search_threads: int = 2,
    faces: "FaceIndex | None" = None,
    image_fetch: "FetchPolicy | None" = None,
    write_wait_s: float = 300.0,
    local_secret: str | None = None,
) -> FastAPI:
    """The HTTP API and web page over `engine` (which the app uses but does not close).

    api_key: when set, adding and deleting items needs header `X-API-Key: <api_key>`; without
        it (or with `read_only`) every write is answered 403 (see `http_state.WriteAccess`).
    max_upload_bytes: largest photo accepted; a request body may exceed it by FORM_OVERHEAD.
    catalogue_root: folder that relative image paths in `POST /api/items` refer to (local paths
        elsewhere are refused; without a root only URLs and uploads are accepted); image URLs are
        made relative to it.
    search_threads: searches (decode + inference) running at once; more wait their turn. Each
        ONNX Runtime call already uses every core: 2 overlaps one search's decoding with
        another's inference; more only added latency on 2 cores (docs/parts/http.md).
    faces: the face index for "find people" (`/api/faces/...`); by default one is opened, on
        first use, from the engine's index folder (faces live in `<index>/faces`).
    image_fetch: how image URLs of added items are downloaded (`remote_images.FetchPolicy`:
        public addresses only, whole-download deadline); default: `FetchPolicy()` with the
        photo size limit.
    write_wait_s: longest a write waits for its turn before a 503 (nothing written).
    local_secret: the secret `lookalike serve` leaves in `<index>/server.json` for the CLI of
        this machine (`lookalike.api.server_file`): accepted in `X-API-Key` like the API key,
        and needed for index jobs on server paths (`lookalike.api.jobs`).
    """
    from lookalike.api.item_writes import ItemWriter, WriteGate
    from lookalike.api.jobs import IndexJobs, jobs_router
    from lookalike.api.remote_images import FetchPolicy

    state = AppState(engine, api_key, max_upload_bytes, catalogue_root, search_threads, faces)
    state.access = WriteAccess.from_keys([api_key], read_only=read_only, local=[local_secret])
    state.writer = ItemWriter(
        engine,
        state.images,
        state.decode,
        partial(item_out, state),
        image_fetch or FetchPolicy(max_bytes=state.decode_limits.max_bytes),
        WriteGate(write_wait_s),
    )

    def written() -> None:  # after an index job (`lookalike.api.jobs`): what the app caches
        state.images.invalidate()
        state.ready = state.engine.manifest is not None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(state.warm_up)
        yield

    app = FastAPI(
        title="lookalike",
        summary="Visual similarity search: find the product in a photo.",
        version=_version(),
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.add_middleware(BodyLimit, limit=max_upload_bytes + FORM_OVERHEAD)
    app.state.lookalike = state
    app.state.index_jobs = jobs = IndexJobs(state.engine, state.writer.gate.lock, written)
    app.include_router(
        jobs_router(
            jobs,
            check_write=state.access.check,
            local_secret=local_secret,
            catalogue_root=catalogue_root,
            index_dir=state.engine.index_dir,
        )
    )
    install_error_handlers(app)
    app.include_router(search_router(state))
    app.include_router(items_router(state))
    app.include_router(faces_router(state))
    app.include_router(index_router(state))

    # -- the page --------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data: http: https:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def index_router(state: AppState) -> APIRouter:
    """`/api/stats`, `/api/facets` and `/healthz` over `state`."""
    router = APIRouter()

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
    try:
        faces = int(face_index_stats(state)["faces"])
    except LookalikeError:  # no face index: 0 (the page offers "Find people" only with faces)
        faces = 0
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


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lookalike")
    except Exception:  # not installed (running from a checkout)
        return "0"
