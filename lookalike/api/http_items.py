"""Item routes of the HTTP API: read an item, add or replace one, delete one (`item_writes`
does the writing), and serve the catalogue images the index lists."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from lookalike.api.http_schemas import (
    NO_SUCH_ITEM,
    WRITE_REFUSED,
    DeletedOut,
    ErrorOut,
    ItemIn,
    ItemOut,
    ItemWriteOut,
)
from lookalike.api.http_state import AppState, KeyHeader
from lookalike.api.results import display_fields
from lookalike.api.served_files import THUMB_SIZES, image_response
from lookalike.errors import QueryError
from lookalike.json_input import loads


def items_router(state: AppState) -> APIRouter:
    """The item endpoints over `state` (writes need `state.access`)."""
    router = APIRouter()

    @router.get(
        "/api/items/{item_id}",
        response_model=ItemOut,
        tags=["items"],
        responses=NO_SUCH_ITEM,
    )
    async def get_item(item_id: str) -> dict[str, Any]:
        """An indexed item: its catalogue fields and images."""
        return await state.read(item_out, state, item_id)

    @router.post(
        "/api/items",
        response_model=ItemWriteOut,
        tags=["items"],
        responses={
            200: {"model": ItemWriteOut, "description": "The item existed and was replaced."},
            201: {"model": ItemWriteOut, "description": "The item was added."},
            **WRITE_REFUSED,
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
    async def post_item(request: Request, x_api_key: KeyHeader = None) -> JSONResponse:
        """Add an item, or replace the item with that id (images it no longer lists are removed).

        JSON: `{"id": "sku-1", "images": ["https://..."], "title": "...", "price": 9.5}`; or
        multipart: field `item` (that JSON, `images` optional) and one or more `photos`, saved
        under the index folder. Every other key becomes a catalogue field.
        """
        state.access.check(x_api_key)
        item, uploads = await parse_item_request(state, request)
        out = await state.writer.add(request, item, uploads)
        state.ready = state.engine.manifest is not None
        return JSONResponse(out, status_code=201 if out["created"] else 200)

    @router.delete(
        "/api/items/{item_id}",
        response_model=DeletedOut,
        tags=["items"],
        responses={**WRITE_REFUSED, **NO_SUCH_ITEM},
    )
    async def delete_item(
        request: Request, item_id: str, x_api_key: KeyHeader = None
    ) -> dict[str, str]:
        """Remove an item: all its views and its centroid."""
        state.access.check(x_api_key)
        return await state.writer.delete(request, item_id)

    @router.get(
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
        return await image_response(state, found, path, size)

    return router


def item_out(state: AppState, item_id: str) -> dict[str, Any]:
    found = state.engine.item(item_id)
    if found is None:
        raise HTTPException(404, f"no item {item_id!r} in this index")
    fields = dict(found["fields"])
    return {
        "item_id": item_id,
        **display_fields(item_id, fields),
        "fields": fields,
        "images": [state.images.name(i) for i in found["images"]],
        "image_urls": [state.images.url_for(i) for i in found["images"]],
    }


async def parse_item_request(
    state: AppState, request: Request
) -> tuple[dict[str, Any], list[bytes]]:
    """(item JSON object, uploaded photo bytes) from a JSON or multipart request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: list[bytes] = []
    if ctype == "application/json":
        raw: bytes | str = await request.body()
    elif ctype == "multipart/form-data":
        form = await request.form(max_files=64, max_fields=16)
        item = form.get("item")
        if item is None:
            raise QueryError("multipart item requests need a field `item` holding the item JSON")
        if not isinstance(item, str):
            raise QueryError("field `item` must be text (the item as JSON), not a file")
        raw = item
        for photo in form.getlist("photos"):
            if isinstance(photo, str):
                raise QueryError("field `photos` must hold files")
            uploads.append(await state.read_upload(photo))
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


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    return str(exc)
