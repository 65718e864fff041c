"""Which local files the HTTP server serves, and the names it shows for them.

Two rules, both checked on every request (a file can change between indexing and serving):

- Listed: a request path must name one of the files the index records (after `.`/`..` are
  collapsed), never a prefix test, so `../` and look-alike folder names lead nowhere.
- Contained: that file, with every symbolic link on its way resolved *now*, must lie in an
  allowed folder: under the catalogue root, under the index's `uploads/`, or in the very folder
  the index records it in. So a catalogue link retargeted after indexing (to `/etc/passwd`, to a
  photo elsewhere) is not followed: the answer is 404, never the other file.

Names: responses never show an absolute path of the server. A file under the catalogue root is
shown relative to it (`img/a.jpg`), an upload as `uploads/ab/<sha256>.jpg`, anything else as
`~<12 hex digits>/<file name>` (a digest of its path, so the URL is stable and tells nothing of the
server's folders). URLs (`http(s)://...`) are shown as they are.

What the HTTP API serves through these rules: catalogue images (`catalogue_images`), face-index
photos (`face_photos`), and small JPEG thumbnails of them (`Thumbnails`, `image_response`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from lookalike.errors import DecodeError, StoreError

if TYPE_CHECKING:
    from lookalike.api.http_state import AppState
    from lookalike.engine.core import Engine
    from lookalike.faces.index import FaceIndex
    from lookalike.pipeline.decode import DecodeLimits

_REFRESH_S = 10.0
"""A request for a file the index does not list re-reads the list at most this often."""

_HASHED = re.compile(r"~([0-9a-f]{12})/[^/]+")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`:]+/)+([^\s/'\"`:,;)]*)")


def norm(path: str) -> str:
    """Absolute, `.` and `..` collapsed; symbolic links are left as they are."""
    return os.path.normpath(os.path.abspath(path))


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def under(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it (both absolute and normalised)."""
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # one relative, or different drives
        return False


def contained(path: str, folders: Iterable[str]) -> bool:
    """True when `path`, its links resolved now, lies under one of `folders` (resolved too) or in
    the folder it is recorded in (that folder resolved now). Blocking (it reads the disk)."""
    real = os.path.realpath(path)
    allowed = [os.path.realpath(f) for f in folders]
    allowed.append(os.path.realpath(os.path.dirname(path)))
    return any(under(real, f) for f in allowed)


def hidden_name(path: str) -> str:
    """`~<12 hex>/<file name>`: a stable name for a file outside every named folder."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"~{digest}/{os.path.basename(path)}"


def redact(message: str) -> str:
    """`message` with every absolute path cut to `.../<last part>` (URLs are left alone)."""
    return _ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(1), message)


class ServedFiles:
    """The local files one endpoint may serve (`prefix`), listed by `load` (which returns the
    recorded paths, URLs included or not). `root`: the catalogue root; `uploads`: the index's
    uploads folder. Thread-safe; `lookup` and `load` are blocking."""

    def __init__(
        self,
        prefix: str,
        load: Callable[[], Iterable[str]],
        root: str | os.PathLike[str] | None,
        uploads: str | os.PathLike[str] | None,
    ) -> None:
        self.prefix = prefix
        self._load_fn = load
        # Resolved like an added item's paths are, so a root given through a link still yields
        # relative names for them.
        self.root = os.path.realpath(root) if root is not None else None
        self.uploads = norm(os.fspath(uploads)) if uploads is not None else None
        self._paths: frozenset[str] | None = None
        self._hashed: dict[str, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    # -- names -----------------------------------------------------------------------------------

    def name(self, ref: str) -> str:
        """What a response shows for `ref` (a recorded path or URL): see the module docstring."""
        if not ref or is_url(ref):
            return ref
        path = norm(ref)
        if self.root is not None and under(path, self.root):
            return os.path.relpath(path, self.root)
        if self.uploads is not None and under(path, self.uploads):
            return "uploads/" + os.path.relpath(path, self.uploads)
        return hidden_name(path)

    def url_for(self, ref: str) -> str | None:
        """Where a browser loads `ref`: itself for a URL, else under `prefix`."""
        if is_url(ref):
            return ref
        if not ref:
            return None
        return self.prefix + quote(self.name(ref), safe="/~")

    # -- serving ---------------------------------------------------------------------------------

    def lookup(self, rel: str) -> str | None:
        """The recorded file a request path names, when it may be served now; else None."""
        for attempt in range(2):
            paths, hashed = self._current(refresh=attempt == 1)
            for candidate in self._candidates(rel, hashed):
                if candidate in paths:
                    folders = [f for f in (self.root, self.uploads) if f is not None]
                    return candidate if contained(candidate, folders) else None
        return None

    def _candidates(self, rel: str, hashed: dict[str, str]) -> list[str]:
        out = []
        if self.root is not None:
            out.append(norm(os.path.join(self.root, rel)))
        if self.uploads is not None and rel.startswith("uploads/"):
            out.append(norm(os.path.join(self.uploads, rel.removeprefix("uploads/"))))
        found = _HASHED.fullmatch(rel)
        if found and found.group(1) in hashed:
            out.append(hashed[found.group(1)])
        return out

    def invalidate(self) -> None:
        with self._lock:
            self._paths = None

    def _current(self, *, refresh: bool) -> tuple[frozenset[str], dict[str, str]]:
        with self._lock:
            stale = time.monotonic() - self._loaded_at > _REFRESH_S
            if self._paths is None or (refresh and stale):
                self._paths = frozenset(norm(p) for p in self._load_fn() if p and not is_url(p))
                self._hashed = {hidden_name(p)[1:13]: p for p in self._paths}
                self._loaded_at = time.monotonic()
            return self._paths, self._hashed


THUMB_SIZES = (64, 1024)
"""Smallest and largest `?size=` accepted by /api/images, in pixels."""
_THUMB_CACHE_ENTRIES = 512


def catalogue_images(engine: Engine, root: Path | None) -> ServedFiles:
    """The local image files recorded in the index (views): the only files `/api/images` serves."""

    def load() -> list[str]:
        from lookalike.store.base import where

        try:
            records = engine.store.scroll(where("kind", "view"), fields=["image"])
        except StoreError:
            return []
        return [str(r.payload.get("image", "")) for r in records]

    return ServedFiles("/api/images/", load, root, engine.index_dir / "uploads")


def face_photos(faces: Callable[[], FaceIndex], root: Path | None, index_dir: Path) -> ServedFiles:
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

    def get(self, path: str, size: int, limits: DecodeLimits) -> bytes:
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


async def image_response(state: AppState, found: str, path: str, size: int | None) -> Response:
    """The file `found` (an allowed path), or a JPEG thumbnail of it when `size` is given."""
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if size is not None:
        data = await state.read(state.thumbnails.get, found, size, state.catalogue_limits)
        return Response(data, media_type="image/jpeg", headers=headers)
    if not os.path.isfile(found):
        raise HTTPException(404, f"image {path!r} is no longer on disk")
    media = _IMAGE_TYPES.get(os.path.splitext(found)[1].lower(), "application/octet-stream")
    return FileResponse(found, media_type=media, headers=headers)
