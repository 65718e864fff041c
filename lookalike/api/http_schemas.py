"""Schemas of the HTTP API's edge: the pydantic models of requests and answers.

Pydantic is used only at this edge; the engine speaks dataclasses (`lookalike.types`).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100

Mode = Literal["views", "centroid"]


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        413: "Upload larger than the limit.",
        415: "The photo is not an image in a supported format.",
        422: "Malformed request, bad filter or box, decompression bomb or corrupt photo.",
        503: "No index yet, or the index or model is unavailable.",
    }.items()
}

NO_SUCH_ITEM: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such item."}
}
WRITE_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong X-API-Key."},
    403: {"model": ErrorOut, "description": "Writes are off on this server."},
}
"""The answers of a route that writes (`X-API-Key`, see `http_state.WriteAccess`)."""
