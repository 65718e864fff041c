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
                                  Without --api-key writes are off (403): `api/auth.py`.
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
  (`api/remote_images.py`); a write whose client has gone is dropped (`api/writes.py`).
- Files served (`/api/images`, `/api/faces/photos`) must be listed by the index and lie, links
  resolved at request time, in an allowed folder (`api/served_files.py`); answers name files
  without the server's absolute paths.
- Errors are JSON `{"detail": "<message for people>", "error": "<kind>"}`: LookalikeError subclasses
  map to 4xx/5xx by type (`_status_for`), malformed requests to 422, a body larger than the limit
  to 413, a photo that is not an image to 415, a decompression bomb or corrupt photo to 422.
- Filters: `where` is an expression (`category = 'Milk' and price < 100`, see
  `lookalike.store.filters`); `filters` is JSON `{field: value | [values] | {"gte": .., "lt": ..}}`;
  both may be given and must then both hold.

Heavy modules (numpy, Pillow, the engine) are imported inside functions: importing this module stays
cheap, so `lookalike --help` stays instant.
"""

import io
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import anyio
from fastapi import FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from lookalike.api.auth import WriteAccess
from lookalike.api.json_input import check_depth, loads, too_deep
from lookalike.api.served_files import ServedFiles, redact
from lookalike.errors import (
    CatalogueError,
    DecodeError,
    IndexMismatchError,
    LookalikeError,
    ModelError,
    QueryError,
    StoreError,
)

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.api.item_writes import ItemWriter
    from lookalike.api.remote_images import FetchPolicy
    from lookalike.engine.core import Engine
    from lookalike.faces.index import FaceIndex
    from lookalike.faces.values import FaceSearchResult
    from lookalike.store.base import Filter
    from lookalike.types import ProductHit

log = logging.getLogger("lookalike.http")

WEB_DIR = Path(__file__).with_name("web")
"""The static page: index.html, app.js, style.css (no build step)."""

MiB = 1024 * 1024
DEFAULT_MAX_UPLOAD = 20 * MiB
FORM_OVERHEAD = 1 * MiB
"""A request body may exceed the photo limit by this much (multipart headers, form fields)."""

MAX_K = 100
THUMB_SIZES = (64, 1024)
"""Smallest and largest `?size=` accepted by /api/images, in pixels."""
_THUMB_CACHE_ENTRIES = 512

Mode = Literal["views", "centroid"]
T = TypeVar("T")


# -- schemas (pydantic only at this edge) --------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, for people.")
    error: str = Field(
        description="Kind of error: the exception type (`DecodeError`, `QueryError` ...), "
        "`validation`, or the HTTP reason (`not_found`, `unauthorized` ...)."
    )


class DetectedObject(BaseModel):
    """A region found in the query photo (from a detector), selectable to search it alone."""

    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the decoded query photo.")
    label: str | None = None
    score: float | None = None


class QueryInfo(BaseModel):
    width: int = Field(description="Width of the decoded (EXIF-rotated) query photo, pixels.")
    height: int = Field(description="Height of the decoded query photo, pixels.")
    box: list[float] | None = Field(
        default=None, description="The region searched (pixels of the decoded photo), if any."
    )


class HitOut(BaseModel):
    rank: int
    item_id: str
    score: float = Field(description="See the response's `score_kind`.")
    similarity: float | None = Field(
        description="Similarity in percent for people (0 to 100); null unless `score_kind` is "
        "`cosine` (a text or fused score is a ranking score, not a similarity)."
    )
    match: Literal["same product", "similar", "no close match"] | None = Field(
        default=None,
        description="By the index's levels, calibrated on its own photos (docs/quality.md, "
        '"Same product or only similar"); null for text scores and uncalibrated indexes.',
    )
    title: str = Field(description="The item's `title` (or `name`) field, else its id.")
    price: float | None = Field(default=None, description="The item's `price` field, if numeric.")
    currency: str | None = None
    image: str = Field(
        description="The best matching image: its URL, or its name on this server (relative to "
        "the catalogue root, `uploads/...`, or `~<digest>/<file name>`; never a server path)."
    )
    image_url: str | None = Field(description="Where a browser can load that image.")
    thumbnail_url: str | None = Field(description="A small version of it (320 px) when local.")
    box: list[float] | None = Field(default=None, description="Region of the image that matched.")
    fields: dict[str, Any] = Field(description="The item's catalogue fields.")


class SearchOut(BaseModel):
    mode: str
    k: int
    score_kind: Literal["cosine", "bm25", "rrf", "cosine+text"] = Field(
        description="What `score` is: cosine similarity in [-1, 1], a BM25 text score, a "
        "reciprocal-rank-fusion score (photo and words, or words and the text tower), or cosine "
        "plus the weighted match of the words read on the photo (OCR text fusion)."
    )
    match: Literal["same product", "similar", "no close match"] | None = Field(
        default=None, description="The first result's `match`: does the index hold the product?"
    )
    results: list[HitOut]
    objects: list[DetectedObject] = Field(
        default_factory=list,
        description="Objects detected in the query photo (empty until a detector is configured).",
    )
    query: QueryInfo | None = None
    query_object: DetectedObject | None = Field(
        default=None,
        description="The region of the photo searched with (a detected object, the given box, "
        "or the whole photo), as the CLI shows it; null for words and items.",
    )
    timings_ms: dict[str, float]


class TextSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=1000, description="What to look for.")
    k: int = Field(default=10, ge=1, le=MAX_K)
    where: str | None = Field(default=None, description="Filter expression.")
    filters: dict[str, Any] | None = Field(default=None, description="Structured filters.")


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    positive: list[str] = Field(
        min_length=1, max_length=MAX_K, description="Item ids: more like these."
    )
    negative: list[str] = Field(
        default_factory=list, max_length=MAX_K, description="Item ids: less like these."
    )
    k: int = Field(default=10, ge=1, le=MAX_K)
    where: str | None = Field(default=None, description="Filter expression.")
    filters: dict[str, Any] | None = Field(default=None, description="Structured filters.")
    mode: Mode | None = Field(default=None, description="centroid or views.")


class FaceBoxOut(BaseModel):
    number: int = Field(description="What `face=N` selects: 0 is the largest face.")
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded photo.")
    det_score: float
    face_size: float = Field(description="Longest side of the box, pixels.")


class FaceQueryOut(BaseModel):
    width: int = Field(description="Width of the decoded (EXIF-rotated) query photo, pixels.")
    height: int
    face: FaceBoxOut = Field(description="The face searched.")
    faces: list[FaceBoxOut] = Field(description="Every face found in the query photo.")


class FaceMatchOut(BaseModel):
    rank: int
    tier: Literal["you", "maybe"] = Field(
        description="you: distance <= threshold; maybe: up to maybe_threshold (shown only when "
        "some photo is in the 'you' tier)."
    )
    photo: str = Field(description="The photo: its URL, or its name on this server (as `image`).")
    name: str = Field(description="The photo's file name.")
    image_url: str | None = Field(description="Where a browser can load the photo.")
    thumbnail_url: str | None = Field(description="A smaller version of it (640 px) when local.")
    image_size: list[int] | None = Field(
        description="Width, height of the photo (pixels `box` refers to)."
    )
    box: list[float] = Field(description="The matching face: x1, y1, x2, y2 in pixels.")
    distance: float = Field(description="0 (same face) .. 2; a match is at most `threshold`.")
    similarity: float = Field(description="Cosine similarity of the descriptors, 1 - d^2 / 2.")
    face_id: str
    det_score: float
    face_size: float


class FaceSearchOut(BaseModel):
    matches: list[FaceMatchOut]
    threshold: float = Field(description="The 'same person' distance used (the 'you' tier).")
    maybe_threshold: float = Field(description="Outer distance of the 'maybe you' tier.")
    query: FaceQueryOut
    timings_ms: dict[str, float]


class ChooseFaceOut(BaseModel):
    detail: str
    error: Literal["ManyFacesError"]
    faces: list[FaceBoxOut] = Field(description="The faces of the photo, largest first.")
    query: dict[str, int] = Field(description="width and height of the decoded photo.")


class ItemOut(BaseModel):
    item_id: str
    title: str
    price: float | None = None
    currency: str | None = None
    fields: dict[str, Any]
    images: list[str]
    image_urls: list[str | None]


class SkippedOut(BaseModel):
    source: str
    reason: str


class ItemWriteOut(BaseModel):
    item: ItemOut
    created: bool
    images_embedded: int
    images_unchanged: int
    skipped: list[SkippedOut]


class ItemIn(BaseModel):
    """One catalogue item, shaped like a line of a JSONL manifest: other keys become fields."""

    model_config = ConfigDict(extra="allow")

    id: str | int = Field(description="Item id (a number becomes its decimal string).")
    images: list[str] = Field(
        default_factory=list,
        description="http(s) URLs, or paths under the server's catalogue root. The server "
        "downloads a URL once (public addresses only, within its deadline) and keeps the copy "
        "under the index, listed as `uploads/...`. With multipart uploads, the uploaded photos "
        "are added to these.",
    )
    image: str | None = Field(default=None, description="One image (same rules as `images`).")


class DeletedOut(BaseModel):
    deleted: str


class HealthOut(BaseModel):
    status: str
    ready: bool = Field(description="Model and index loaded (the first search will not wait).")


# -- filters -------------------------------------------------------------------------------------

_FIELD_NAME = re.compile(r"[A-Za-z_][\w\-]*")
_RANGE_KEYS = ("gt", "gte", "lt", "lte")


def structured_filter(spec: Mapping[str, Any] | str | None) -> "Filter | None":
    """JSON filters -> Filter. `{field: value | [values] | {"gte": 1, "lt": 9}}`, all must hold.

    A float value matches numerically (as `field = 2.5` does in a `where` expression); a list matches
    any of its values (strings or integers); an empty list or an empty object adds no condition.
    Raises QueryError with the reason for anything else.
    """
    from lookalike.store.base import Condition, Filter

    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        spec = loads(spec, "filters (a JSON object)")
    else:
        check_depth(spec, "filters")
    if not isinstance(spec, Mapping):
        raise QueryError(f"filters must be a JSON object, got {type(spec).__name__}")
    conditions: list[Condition] = []
    for name, value in spec.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise QueryError(f"filters: {name!r} is not a field name")
        if isinstance(value, list):
            if not value:
                continue
            if not all(_keyword_like(v) for v in value):
                raise QueryError(f"filters: {name} lists must hold strings or integers")
            conditions.append(Condition(name, "in", tuple(value)))
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_RANGE_KEYS))
            if unknown:
                raise QueryError(
                    f"filters: {name} has {unknown}; a range takes {', '.join(_RANGE_KEYS)}"
                )
            bounds: dict[str, float] = {}
            for key, bound in value.items():
                if bound is None:
                    continue
                if not _number(bound):
                    raise QueryError(f"filters: {name}.{key} must be a number, got {bound!r}")
                bounds[key] = float(bound)
            if bounds:
                conditions.append(Condition(name, "range", **bounds))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise QueryError(f"filters: {name} must be a finite number")
            conditions.append(Condition(name, "range", gte=value, lte=value))
        elif isinstance(value, str | int | bool):
            conditions.append(Condition(name, "eq", value))
        else:
            raise QueryError(
                f"filters: {name} must be a value, a list of values or a range, got {value!r}"
            )
    return Filter(tuple(conditions)) if conditions else None


def _keyword_like(v: object) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def combined_filter(where: str | None, filters: Mapping[str, Any] | str | None) -> "Filter | None":
    """The `where` expression AND the structured filters (either may be absent)."""
    from lookalike.store.filters import parse_where

    expr = parse_where(where)
    structured = structured_filter(filters)
    if expr is None:
        return structured
    return expr & structured


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


# -- errors --------------------------------------------------------------------------------------


def _decode_status(message: str) -> int:
    """413 for too large, 415 for what is not a (supported) image, else 422 (bomb, corrupt)."""
    text = message.lower()
    if "too large" in text or "larger than limit" in text:
        return 413
    if text.startswith(("not an image", "unsupported", "avif needs", "heic needs")):
        return 415
    return 422


def _status_for(exc: LookalikeError) -> int:
    match exc:
        case DecodeError():
            return _decode_status(str(exc))
        case QueryError() | CatalogueError():
            return 422
        case StoreError() | ModelError():
            return 503  # no index yet, shard locked by another process, model missing
        case IndexMismatchError():
            return 500  # the server was started with a model that did not build the index
    return 500


def _error(
    status: int, detail: str, kind: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": kind}, status_code=status, headers=headers)


def _http_kind(status: int) -> str:
    """`not_found`, `unauthorized` ... from the status code's reason phrase."""
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(
            str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")
        )
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "malformed request"


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        413: "Upload larger than the limit.",
        415: "The photo is not an image in a supported format.",
        422: "Malformed request, bad filter or box, decompression bomb or corrupt photo.",
        503: "No index yet, or the index or model is unavailable.",
    }.items()
}


# -- request body limit --------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body larger than `limit` bytes is answered 413 without reading it.

    A declared Content-Length over the limit is refused before the app runs; a chunked body is
    counted as it streams and refused at the first byte over (raised as HTTPException(413) from
    `receive`, which FastAPI re-raises to the error handler).
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            response = _error(
                413, self._message(int(declared)), _http_kind(413), {"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self._message(seen, at_least=True))
            return message

        await self.app(scope, counted, send)

    def _message(self, size: int, *, at_least: bool = False) -> str:
        photo = self.limit - FORM_OVERHEAD
        return (
            f"upload too large: {'more than ' if at_least else ''}{size} bytes; "
            f"photos may have at most {photo} bytes ({photo / MiB:.1f} MiB)"
        )


# -- catalogue images ----------------------------------------------------------------------------


def _catalogue_images(engine: "Engine", root: Path | None) -> ServedFiles:
    """The local image files recorded in the index (views): the only files `/api/images` serves."""

    def load() -> list[str]:
        from lookalike.store.base import where

        try:
            records = engine.store.scroll(where("kind", "view"), fields=["image"])
        except StoreError:
            return []
        return [str(r.payload.get("image", "")) for r in records]

    return ServedFiles("/api/images/", load, root, engine.index_dir / "uploads")


def _face_photos(
    faces: "Callable[[], FaceIndex]", root: Path | None, index_dir: Path
) -> ServedFiles:
    """The photos of the face index: the only files `/api/faces/photos` serves (same rules).

    `faces` is called (on a worker thread) for the FaceIndex; forgotten photos are not listed.
    """

    def load() -> list[str]:
        try:
            return list(faces().photos())
        except StoreError:
            return []

    return ServedFiles("/api/faces/photos/", load, root, index_dir / "uploads")


class Thumbnails:
    """Small JPEG versions of catalogue images, cached in memory (bounded, keyed by mtime)."""

    def __init__(self, entries: int = _THUMB_CACHE_ENTRIES) -> None:
        self._cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._entries = entries
        self._lock = threading.Lock()

    def get(self, path: str, size: int, limits: Any) -> bytes:
        """JPEG bytes, longest side at most `size` px. Blocking. DecodeError if unreadable."""
        from lookalike.pipeline.decode import decode_image, read_source

        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
        key = (path, size, mtime)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        image = decode_image(read_source(path, limits), path, limits)
        image.thumbnail((size, size))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=85, optimize=True)
        data = buf.getvalue()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return data


_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".heif": "image/heif",
}


# -- the app -------------------------------------------------------------------------------------


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
        it (or with `read_only`) every write is answered 403 (see `lookalike.api.auth`).
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
    from lookalike.api.item_writes import ItemWriter
    from lookalike.api.remote_images import FetchPolicy
    from lookalike.api.writes import WriteGate

    state = _State(engine, api_key, max_upload_bytes, catalogue_root, search_threads, faces)
    state.access = WriteAccess.from_keys([api_key], read_only=read_only, local=[local_secret])
    state.writer = ItemWriter(
        engine,
        state.images,
        state.decode,
        state.item_out,
        image_fetch or FetchPolicy(max_bytes=state.decode_limits.max_bytes),
        WriteGate(write_wait_s),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        await anyio.to_thread.run_sync(state.warm_up)
        yield

    app = FastAPI(
        title="lookalike",
        summary="Visual similarity search: find the product in a photo.",
        version=_version(),
        lifespan=lifespan,
        responses=_ERROR_RESPONSES,
    )
    app.add_middleware(BodyLimit, limit=max_upload_bytes + FORM_OVERHEAD)
    app.state.lookalike = state
    app.state.index_jobs = _mount_jobs(app, state, local_secret, catalogue_root)

    @app.exception_handler(LookalikeError)
    async def _lookalike_error(_request: Request, exc: LookalikeError) -> JSONResponse:
        status = _status_for(exc)
        if status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc)
        # The log keeps the server's paths; the answer does not.
        return _error(status, redact(str(exc)), type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc), "validation")

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's JSON body parsing: a 400
            return _error(422, str(too_deep("the request")), "QueryError")
        detail = redact(str(exc.detail))
        return _error(exc.status_code, detail, _http_kind(exc.status_code), exc.headers)

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        # Only input recurses this deep (`json_input` bounds what the endpoints parse).
        return _error(422, str(too_deep("the request")), "QueryError")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log", "internal")

    # -- search ----------------------------------------------------------------------------------

    @app.post("/api/search", response_model=SearchOut, tags=["search"])
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
            data = await fetch_image(url.strip(), state.writer.policy)  # type: ignore[union-attr]
        return await state.run_search(
            state.search_photo, data, k, box, box_units, where, filters, mode, text
        )

    @app.post("/api/search/text", response_model=SearchOut, tags=["search"])
    async def search_text(body: TextSearchIn) -> dict[str, Any]:
        """Items matching words: BM25 over each item's catalogue text and automatic attributes
        (colours, classes); with a CLIP-family model also its text tower, the rankings fused."""
        return await state.run_search(state.search_text, body)

    async def similar(
        item_id: str,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        where: Annotated[str | None, Query(description="Filter expression.")] = None,
        filters: Annotated[str | None, Query(description="Structured filters (JSON).")] = None,
        mode: Annotated[Mode | None, Query()] = None,
    ) -> dict[str, Any]:
        """More like this: the items closest to `item_id` (the item itself left out)."""
        return await state.run_search(state.search_similar, item_id, k, where, filters, mode)

    @app.post(
        "/api/recommend",
        response_model=SearchOut,
        tags=["search"],
        responses={404: {"model": ErrorOut, "description": "No such item."}},
    )
    async def recommend(body: RecommendIn) -> dict[str, Any]:
        """More like the `positive` items, less like the `negative` ones: the mean of the
        positives' vectors pushed away from the negatives' mean (Qdrant's recommend idea),
        every example left out of the results."""
        return await state.run_search(state.search_recommend, body)

    common = {
        "response_model": SearchOut,
        "tags": ["search"],
        "responses": {404: {"model": ErrorOut, "description": "No such item."}},
    }
    app.get("/api/similar/{item_id}", **common)(similar)
    app.post("/api/similar/{item_id}", operation_id="similar_post", **common)(similar)

    # -- items -----------------------------------------------------------------------------------

    @app.get(
        "/api/items/{item_id}",
        response_model=ItemOut,
        tags=["items"],
        responses={404: {"model": ErrorOut, "description": "No such item."}},
    )
    async def get_item(item_id: str) -> dict[str, Any]:
        """An indexed item: its catalogue fields and images."""
        return await state.read(state.item_out, item_id)

    @app.post(
        "/api/items",
        response_model=ItemWriteOut,
        tags=["items"],
        responses={
            200: {"model": ItemWriteOut, "description": "The item existed and was replaced."},
            201: {"model": ItemWriteOut, "description": "The item was added."},
            401: {"model": ErrorOut, "description": "Missing or wrong X-API-Key."},
            403: {"model": ErrorOut, "description": "Writes are off on this server."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": ItemIn.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["item"],
                            "properties": {
                                "item": {"type": "string", "description": "The item as JSON."},
                                "photos": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                            },
                        }
                    },
                },
            }
        },
    )
    async def post_item(
        request: Request, x_api_key: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Add an item, or replace the item with that id (images it no longer lists are removed).

        JSON: `{"id": "sku-1", "images": ["https://..."], "title": "...", "price": 9.5}`; or
        multipart: field `item` (that JSON, `images` optional) and one or more `photos`, saved
        under the index folder. Every other key becomes a catalogue field.
        """
        state.access.check(x_api_key)
        item, uploads = await state.parse_item_request(request)
        out = await state.writer.add(request, item, uploads)
        state.ready = engine.manifest is not None
        return JSONResponse(out, status_code=201 if out["created"] else 200)

    @app.delete(
        "/api/items/{item_id}",
        response_model=DeletedOut,
        tags=["items"],
        responses={
            401: {"model": ErrorOut, "description": "Missing or wrong X-API-Key."},
            403: {"model": ErrorOut, "description": "Writes are off on this server."},
            404: {"model": ErrorOut, "description": "No such item."},
        },
    )
    async def delete_item(
        request: Request, item_id: str, x_api_key: Annotated[str | None, Header()] = None
    ) -> dict[str, str]:
        """Remove an item: all its views and its centroid."""
        state.access.check(x_api_key)
        return await state.writer.delete(request, item_id)

    @app.get(
        "/api/images/{path:path}",
        tags=["items"],
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The image file."},
            404: {"model": ErrorOut, "description": "Not an image of the index."},
        },
    )
    async def get_image(
        path: str,
        size: Annotated[
            int | None,
            Query(
                ge=THUMB_SIZES[0],
                le=THUMB_SIZES[1],
                description="Longest side of a JPEG thumbnail.",
            ),
        ] = None,
    ) -> Response:
        """A catalogue image: only files recorded in the index are served, nothing else."""
        found = await state.read(state.images.lookup, path)
        if found is None:
            raise HTTPException(404, f"no catalogue image {path!r} in this index")
        return await _image_response(state, found, path, size)

    # -- find people -----------------------------------------------------------------------------

    @app.post(
        "/api/faces/search",
        response_model=FaceSearchOut,
        tags=["faces"],
        responses={
            409: {
                "model": ChooseFaceOut,
                "description": "Several faces in the photo: ask again with `face=N`.",
            },
            422: {"model": ErrorOut, "description": "No face in the photo, or a bad face number."},
        },
    )
    async def search_faces(
        photo: Annotated[UploadFile, File(description="A photo of the person (a selfie).")],
        face: Annotated[
            int | None,
            Form(ge=0, description="Which face of the photo, 0 = largest (see the 409 answer)."),
        ] = None,
        threshold: Annotated[
            float | None,
            Form(
                gt=0,
                le=2,
                description="'Same person' distance, 0..2 [default: the calibrated 0.36].",
            ),
        ] = None,
        maybe_threshold: Annotated[
            float | None,
            Form(
                ge=0,
                le=2,
                description="Outer distance of the 'maybe you' tier [default: 0.42].",
            ),
        ] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K, description="Most photos returned.")] = 50,
    ) -> Any:
        """The indexed photos that contain the person of the photo, best first, each with the
        matching face's box. Several faces in the photo and no `face`: 409 listing them."""
        data = await state.read_upload(photo)
        status, body = await state.run_search(
            state.search_faces, data, face, threshold, k, maybe_threshold
        )
        return body if status == 200 else JSONResponse(body, status_code=status)

    @app.get(
        "/api/faces/photos/{path:path}",
        tags=["faces"],
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The photo."},
            404: {"model": ErrorOut, "description": "Not a photo of the face index."},
        },
    )
    async def get_face_photo(
        path: str,
        size: Annotated[
            int | None,
            Query(ge=THUMB_SIZES[0], le=THUMB_SIZES[1], description="Longest side of a thumbnail."),
        ] = None,
    ) -> Response:
        """A photo of the face index: only photos whose faces are indexed are served."""
        found = await state.read(state.face_photos.lookup, path)
        if found is None:
            raise HTTPException(404, f"no photo {path!r} in the face index")
        return await _image_response(state, found, path, size)

    @app.get("/api/faces/stats", tags=["faces"])
    async def face_stats() -> dict[str, Any]:
        """Photos and faces in the face index (503 when there is none yet)."""
        return await state.read(state.face_stats)

    from lookalike.api.http_faces_people import people_router

    app.include_router(
        people_router(
            state.face_index, state.access.check, state.face_photos.url_for, state.catalogue_limits
        )
    )

    # -- information -----------------------------------------------------------------------------

    @app.get("/api/stats", tags=["index"])
    async def stats() -> dict[str, Any]:
        """Items, views, model, index size and filterable fields (name -> keyword/float/bool)."""
        return await state.read(state.stats)

    @app.get("/api/facets", tags=["index"])
    async def facets(
        field: Annotated[str, Query(description="A keyword field (see /api/stats `fields`).")],
        where: Annotated[str | None, Query()] = None,
        filters: Annotated[str | None, Query(description="Structured filters (JSON).")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        """Values of `field` and how many items have each, among the items matching the filters."""
        return await state.read(state.facets, field, where, filters, limit)

    @app.get("/healthz", response_model=HealthOut, tags=["index"])
    async def healthz() -> dict[str, Any]:
        """Liveness: answers at once, even while searches run."""
        return {"status": "ok", "ready": state.ready}

    # -- the page --------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _mount_jobs(
    app: FastAPI, state: "_State", local_secret: str | None, catalogue_root: Path | None
) -> Any:
    """Index jobs (`lookalike.api.jobs`) on the server's engine, under its write lock."""
    from lookalike.api.jobs import IndexJobs, jobs_router

    def written() -> None:
        state.images.invalidate()
        state.ready = state.engine.manifest is not None

    jobs = IndexJobs(state.engine, state.writer.gate.lock, written)
    app.include_router(
        jobs_router(
            jobs,
            check_write=state.access.check,
            local_secret=local_secret,
            catalogue_root=catalogue_root,
            index_dir=state.engine.index_dir,
        )
    )
    return jobs


async def _image_response(state: "_State", found: str, path: str, size: int | None) -> Response:
    """The file `found` (an allowed path), or a JPEG thumbnail of it when `size` is given."""
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if size is not None:
        data = await state.read(state.thumbnails.get, found, size, state.catalogue_limits)
        return Response(data, media_type="image/jpeg", headers=headers)
    if not os.path.isfile(found):
        raise HTTPException(404, f"image {path!r} is no longer on disk")
    media = _IMAGE_TYPES.get(os.path.splitext(found)[1].lower(), "application/octet-stream")
    return FileResponse(found, media_type=media, headers=headers)


_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data: http: https:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lookalike")
    except Exception:  # not installed (running from a checkout)
        return "0"


class _State:
    """What the endpoints share: the engine, the write lock, limits and caches."""

    def __init__(
        self,
        engine: "Engine",
        api_key: str | None,
        max_upload_bytes: int,
        catalogue_root: Path | None,
        search_threads: int,
        faces: "FaceIndex | None" = None,
    ) -> None:
        from lookalike.pipeline.decode import DecodeLimits

        self.engine = engine
        self.api_key = api_key or None
        self.access = WriteAccess.from_keys([api_key])
        self.writer: ItemWriter  # set by create_app
        self.max_upload_bytes = max_upload_bytes
        self.images = _catalogue_images(engine, catalogue_root)
        self.thumbnails = Thumbnails()
        self._faces = faces
        self._faces_lock = threading.Lock()
        self._face_search_lock = threading.Lock()
        self.face_photos = _face_photos(self.face_index, catalogue_root, engine.index_dir)
        self._warm_lock = threading.Lock()
        self._told_no_index = False
        self.ready = False
        self._search_threads = max(1, search_threads)
        self._limiter: anyio.CapacityLimiter | None = None
        settings = engine.settings
        self.decode_limits = DecodeLimits(
            max_bytes=min(settings.max_image_bytes, max_upload_bytes),
            max_pixels=settings.max_image_pixels,
        )
        self.catalogue_limits = DecodeLimits(
            max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )

    # -- plumbing --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Open the store and load the model once, before the first request needs them.

        The engine builds both lazily; doing it here (under a lock) keeps concurrent first
        requests from loading the model twice. Without an index yet, only the model is loaded.
        """
        if self.ready:
            return
        with self._warm_lock:
            if self.ready:
                return
            try:
                _ = self.engine.store
            except StoreError as exc:
                if not self._told_no_index:  # once, not on every request
                    log.warning("%s", exc)
                    self._told_no_index = True
            _ = self.engine.embedder
            self.ready = self.engine.manifest is not None

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read (store, disk) on a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args)

    async def run_search(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a search on a worker thread; at most `search_threads` at once."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._search_threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def read_upload(self, upload: UploadFile) -> bytes:
        """The uploaded file's bytes; 413 past the limit (read one byte more to know)."""
        data = await upload.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise HTTPException(
                413,
                f"photo too large: more than {self.max_upload_bytes} bytes "
                f"({self.max_upload_bytes / MiB:.1f} MiB is the limit)",
            )
        if not data:
            raise DecodeError("empty file: the photo has no bytes")
        return data

    def decode(self, data: bytes, *, full_size: bool = False) -> "Image.Image":
        from dataclasses import replace

        from lookalike.pipeline.decode import decode_image

        limits = replace(self.decode_limits, draft_size=None) if full_size else self.decode_limits
        return decode_image(data, "upload", limits)

    # -- search ----------------------------------------------------------------------------------

    def search_photo(
        self,
        data: bytes,
        k: int,
        box: str | None,
        box_units: str,
        where: str | None,
        filters: str | None,
        mode: str | None,
        text: str | None = None,
    ) -> dict[str, Any]:
        self.warm_up()
        flt = combined_filter(where, filters)
        t0 = time.perf_counter()
        # A box in pixels refers to the photo as uploaded: decode at full size so the numbers
        # mean what the client meant (large JPEGs are otherwise decoded at a reduced size).
        image = self.decode(data, full_size=bool(box and box.strip()) and box_units == "px")
        decode_ms = (time.perf_counter() - t0) * 1e3
        pixels = parse_box(box, box_units, image.size)
        result = self.engine.search(
            image,
            k=k,
            where=flt,
            mode=mode,  # type: ignore[arg-type]
            box=pixels,
            text=text.strip() if text and text.strip() else None,
        )
        timings = {**result.timings_ms, "decode": decode_ms}
        used_box = None
        if pixels is not None:
            w, h = image.size
            xs = sorted(min(max(v, 0.0), w) for v in pixels[0::2])
            ys = sorted(min(max(v, 0.0), h) for v in pixels[1::2])
            used_box = [xs[0], ys[0], xs[1], ys[1]]
        objects = [
            {
                "box": list(o.box.as_list() if hasattr(o.box, "as_list") else o.box),
                "label": getattr(o, "label", None),
                "score": getattr(o, "score", None),
            }
            for o in getattr(result, "objects", ())
        ]
        out = self._search_out(
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

    def search_text(self, body: TextSearchIn) -> dict[str, Any]:
        self.warm_up()
        flt = combined_filter(body.where, body.filters)
        result = self.engine.search_text(body.text, k=body.k, where=flt)
        return self._search_out(
            result.hits, body.k, result.mode, result.timings_ms, score_kind=result.score
        )

    def search_similar(
        self, item_id: str, k: int, where: str | None, filters: str | None, mode: str | None
    ) -> dict[str, Any]:
        self.warm_up()
        flt = combined_filter(where, filters)
        try:
            self.engine.item_vector(item_id)  # one point: tells "unknown item" from other errors
        except QueryError:
            raise HTTPException(404, f"no item {item_id!r} in this index") from None
        result = self.engine.similar(item_id, k=k, where=flt, mode=mode)  # type: ignore[arg-type]
        return self._search_out(
            result.hits, k, result.mode, result.timings_ms, score_kind=result.score
        )

    def search_recommend(self, body: RecommendIn) -> dict[str, Any]:
        self.warm_up()
        flt = combined_filter(body.where, body.filters)
        for item_id in dict.fromkeys([*body.positive, *body.negative]):
            try:
                self.engine.item_vector(item_id)
            except QueryError:
                raise HTTPException(404, f"no item {item_id!r} in this index") from None
        result = self.engine.recommend(
            body.positive,
            body.negative,
            k=body.k,
            where=flt,
            mode=body.mode,  # type: ignore[arg-type]
        )
        return self._search_out(
            result.hits, body.k, result.mode, result.timings_ms, score_kind=result.score
        )

    def _search_out(
        self,
        hits: Sequence["ProductHit"],
        k: int,
        mode: str,
        timings: Mapping[str, float],
        *,
        score_kind: str = "cosine",
        objects: list[dict[str, Any]] | None = None,
        query: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        results = []
        for rank, hit in enumerate(hits, 1):
            fields = dict(hit.fields)
            url = self.images.url_for(hit.image)
            local = url is not None and url.startswith("/api/images/")
            results.append(
                {
                    "rank": rank,
                    "item_id": hit.item_id,
                    "score": round(float(hit.score), 5),
                    "similarity": hit.similarity_percent if score_kind == "cosine" else None,
                    "match": hit.match,
                    **_display_fields(hit.item_id, fields),
                    "image": self.images.name(hit.image),
                    "image_url": url,
                    "thumbnail_url": f"{url}?size=320" if local else url,
                    "box": list(hit.box) if hit.box else None,
                    "fields": fields,
                }
            )
        total = sum(timings.values())
        return {
            "mode": mode,
            "k": k,
            "score_kind": score_kind,
            "match": hits[0].match if hits else None,
            "results": results,
            "objects": objects or [],
            "query": query,
            "timings_ms": {
                **{k_: round(v, 2) for k_, v in timings.items()},
                "total": round(total, 2),
            },
        }

    # -- items -----------------------------------------------------------------------------------

    def item_out(self, item_id: str) -> dict[str, Any]:
        found = self.engine.item(item_id)
        if found is None:
            raise HTTPException(404, f"no item {item_id!r} in this index")
        fields = dict(found["fields"])
        return {
            "item_id": item_id,
            **_display_fields(item_id, fields),
            "fields": fields,
            "images": [self.images.name(i) for i in found["images"]],
            "image_urls": [self.images.url_for(i) for i in found["images"]],
        }

    async def parse_item_request(self, request: Request) -> tuple[dict[str, Any], list[bytes]]:
        """(item JSON object, uploaded photo bytes) from a JSON or multipart request."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        uploads: list[bytes] = []
        if ctype == "application/json":
            raw: Any = await request.body()
        elif ctype == "multipart/form-data":
            form = await request.form(max_files=64, max_fields=16)
            raw = form.get("item")
            if raw is None:
                raise QueryError(
                    "multipart item requests need a field `item` holding the item JSON"
                )
            if not isinstance(raw, str):
                raise QueryError("field `item` must be text (the item as JSON), not a file")
            for photo in form.getlist("photos"):
                if isinstance(photo, str):
                    raise QueryError("field `photos` must hold files")
                uploads.append(await self.read_upload(photo))  # type: ignore[arg-type]
        else:
            raise HTTPException(
                415, "send the item as application/json, or as multipart/form-data with photos"
            )
        obj = loads(raw, "item")
        if not isinstance(obj, dict):
            raise QueryError(f"item must be a JSON object, got {type(obj).__name__}")
        try:
            ItemIn.model_validate(obj)
        except ValueError as exc:  # pydantic's ValidationError
            raise QueryError(f"item: {_first_error(exc)}") from None
        return obj, uploads

    # -- find people -----------------------------------------------------------------------------

    def face_index(self) -> "FaceIndex":
        """The face index, opened once (StoreError, hence 503, while there is none). Blocking."""
        with self._faces_lock:
            if self._faces is None:
                from lookalike.faces.index import FaceIndex

                self._faces = FaceIndex(self.engine.index_dir, self.engine.settings)
            _ = self._faces.store  # opens the shard, or says there is no face index yet
            return self._faces

    def search_faces(
        self,
        data: bytes,
        face: int | None,
        threshold: float | None,
        k: int,
        maybe_threshold: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(200, matches) or (409, the faces to choose from). Blocking.

        Boxes are in pixels of the photo as uploaded (EXIF-rotated, decoded at full size).
        """
        from lookalike.faces.errors import ManyFacesError

        faces = self.face_index()
        t0 = time.perf_counter()
        image = self.decode(data, full_size=True)
        decode_ms = (time.perf_counter() - t0) * 1e3
        size = {"width": image.size[0], "height": image.size[1]}
        try:
            # dlib's detector and network are not documented as thread-safe: one at a time.
            with self._face_search_lock:
                result = faces.search(
                    image, face=face, threshold=threshold, k=k, maybe_threshold=maybe_threshold
                )
        except ManyFacesError as exc:
            listed = [
                {
                    "number": n,
                    "box": [round(v, 1) for v in f.box.as_list()],
                    "det_score": round(float(f.score), 4),
                    "face_size": round(float(f.size), 1),
                }
                for n, f in enumerate(exc.faces)
            ]
            return 409, {
                "detail": str(exc),
                "error": "ManyFacesError",
                "faces": listed,
                "query": size,
            }
        return 200, self._faces_out(faces, result, size, decode_ms)

    def _faces_out(
        self,
        faces: "FaceIndex",
        result: "FaceSearchResult",
        size: dict[str, int],
        decode_ms: float,
    ) -> dict[str, Any]:
        ids = [m.face_id for m in result.matches]
        sizes = (
            {r.id: r.payload.get("image_size") for r in faces.store.retrieve(ids)} if ids else {}
        )
        matches = []
        for rank, m in enumerate(result.matches, 1):
            url = self.face_photos.url_for(m.photo)
            local = url is not None and url.startswith(self.face_photos.prefix)
            image_size = sizes.get(m.face_id)
            matches.append(
                {
                    "rank": rank,
                    "tier": m.tier,
                    "photo": self.face_photos.name(m.photo),
                    "name": os.path.basename(m.photo.rstrip("/")) or m.photo,
                    "image_url": url,
                    "thumbnail_url": f"{url}?size=640" if local else url,
                    "image_size": list(image_size) if image_size else None,
                    "box": [round(v, 1) for v in m.box],
                    "distance": m.distance,
                    "similarity": m.similarity,
                    "face_id": m.face_id,
                    "det_score": m.det_score,
                    "face_size": m.face_size,
                }
            )
        timings = {**result.timings_ms, "decode": decode_ms}
        return {
            "matches": matches,
            "threshold": result.threshold,
            "maybe_threshold": result.maybe_threshold,
            "query": {
                **size,
                "face": _query_face_out(result.query_face),
                "faces": [_query_face_out(f) for f in result.query_faces],
            },
            "timings_ms": {
                **{k_: round(v, 2) for k_, v in timings.items()},
                "total": round(sum(timings.values()), 2),
            },
        }

    def face_stats(self) -> dict[str, Any]:
        info = dict(self.face_index().stats())
        info.pop("index", None)  # the server's folder layout is nobody's business
        info["threshold"] = self.face_index().face_settings.threshold
        info["maybe_threshold"] = self.face_index().face_settings.maybe_threshold
        return info

    # -- information -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        self.warm_up()
        faces = self._face_count()
        if self.engine.manifest is None and faces:  # a folder of faces only (`faces index`)
            info: dict[str, Any] = {"items": 0, "views": 0, "fields": {}}
        else:
            info = self.engine.stats()  # no index at all: StoreError, a 503
        embedder = self.engine.embedder
        info.pop("index", None)  # the server's folder layout is nobody's business
        info.update(
            text_tower=callable(getattr(embedder, "embed_texts", None)),
            auth_required=self.api_key is not None,
            writable=self.access.enabled,
            max_upload_bytes=self.max_upload_bytes,
            mode=self.engine.settings.mode,
            faces=faces,
        )
        return info

    def _face_count(self) -> int:
        """Faces in the face index, 0 without one (the page offers "Find people" only then)."""
        try:
            return int(self.face_stats()["faces"])
        except LookalikeError:
            return 0

    def facets(
        self, field: str, where: str | None, filters: str | None, limit: int
    ) -> dict[str, Any]:
        kinds = self.engine.fields()
        if field not in kinds:
            known = ", ".join(sorted(kinds)) or "none"
            raise QueryError(f"no filterable field {field!r}; the index has: {known}")
        if kinds[field] != "keyword":
            raise QueryError(f"{field} is a {kinds[field]} field; facets are for keyword fields")
        counts = self.engine.facets(field, where=combined_filter(where, filters), limit=limit)
        values = [{"value": v, "count": n} for v, n in counts.items()]
        return {"field": field, "values": values}


def _query_face_out(f: Any) -> dict[str, Any]:
    return {
        "number": f.number,
        "box": [round(v, 1) for v in f.box],
        "det_score": f.det_score,
        "face_size": f.face_size,
    }


def _display_fields(item_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """title, price and currency for cards, from the catalogue's usual field names."""
    title = fields.get("title") or fields.get("name") or item_id
    price = fields.get("price")
    currency = fields.get("currency")
    return {
        "title": str(title),
        "price": float(price) if _number(price) else None,
        "currency": str(currency) if isinstance(currency, str) else None,
    }


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    return str(exc)
