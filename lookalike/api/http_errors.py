"""Errors of the HTTP API as JSON answers, and the request body limit.

Errors are JSON `{"detail": "<message for people>", "error": "<kind>"}`: LookalikeError subclasses
map to 4xx/5xx by type (`_status_for`), malformed requests to 422, a body larger than the limit
to 413, a photo that is not an image to 415, a decompression bomb or corrupt photo to 422.
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api.served_files import redact
from lookalike.errors import (
    CatalogueError,
    DecodeError,
    IndexMismatchError,
    LookalikeError,
    ModelError,
    QueryError,
    StoreError,
)
from lookalike.json_input import too_deep

log = logging.getLogger("lookalike.http")

MiB = 1024 * 1024
DEFAULT_MAX_UPLOAD = 20 * MiB
FORM_OVERHEAD = 1 * MiB
"""A request body may exceed the photo limit by this much (multipart headers, form fields)."""


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


# -- request body limit --------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body larger than `limit` bytes is answered 413 without reading it.

    A declared Content-Length over the limit is refused before the app runs; a chunked body is
    counted as it streams and refused at the first byte over (raised as HTTPException(413) from
    `receive`, which FastAPI re-raises to the error handler).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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

        async def counted() -> Message:
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


# -- handlers ------------------------------------------------------------------------------------


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` as JSON `{"detail", "error"}` (see the module docstring)."""

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
