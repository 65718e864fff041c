"""Files the HTTP API serves: catalogue images and face-index photos (only those the index
lists, `served_files.ServedFiles`), and small JPEG thumbnails of them."""

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from lookalike.api.served_files import ServedFiles
from lookalike.errors import DecodeError, StoreError

if TYPE_CHECKING:
    from lookalike.api.http_state import AppState
    from lookalike.engine.core import Engine
    from lookalike.faces.index import FaceIndex
    from lookalike.pipeline.decode import DecodeLimits

THUMB_SIZES = (64, 1024)
"""Smallest and largest `?size=` accepted by /api/images, in pixels."""
_THUMB_CACHE_ENTRIES = 512


def catalogue_images(engine: "Engine", root: Path | None) -> ServedFiles:
    """The local image files recorded in the index (views): the only files `/api/images` serves."""

    def load() -> list[str]:
        from lookalike.store.base import where

        try:
            records = engine.store.scroll(where("kind", "view"), fields=["image"])
        except StoreError:
            return []
        return [str(r.payload.get("image", "")) for r in records]

    return ServedFiles("/api/images/", load, root, engine.index_dir / "uploads")


def face_photos(
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

    def get(self, path: str, size: int, limits: "DecodeLimits") -> bytes:
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


async def image_response(state: "AppState", found: str, path: str, size: int | None) -> Response:
    """The file `found` (an allowed path), or a JPEG thumbnail of it when `size` is given."""
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if size is not None:
        data = await state.read(state.thumbnails.get, found, size, state.catalogue_limits)
        return Response(data, media_type="image/jpeg", headers=headers)
    if not os.path.isfile(found):
        raise HTTPException(404, f"image {path!r} is no longer on disk")
    media = _IMAGE_TYPES.get(os.path.splitext(found)[1].lower(), "application/octet-stream")
    return FileResponse(found, media_type=media, headers=headers)
