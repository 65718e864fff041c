"""What the HTTP endpoints share (`AppState`): the engine, write access, limits, caches and the
worker threads that run blocking work off the event loop; and who may write through the HTTP API:
one decision, `WriteAccess.check`, for every write endpoint.

Writes (adding, replacing and deleting items) are off unless the operator configured a credential:
a server started without `--api-key` answers every write 403 with how to turn writes on, so a
server reachable by others (or by any web page its operator visits) cannot be changed by them.

A credential travels in a request header (`X-API-Key`), never in a cookie or the URL: a cross-site
form cannot set a header, and a cross-site `fetch` that sets one needs a CORS preflight this server
never grants (it sends no `Access-Control-Allow-*` headers). So with writes on, a web page the
operator visits cannot forge a write either (the multipart POST of issue 14 is answered 401).

The CLI of the server's own machine writes through it with the local secret `lookalike serve` leaves
in `<index>/server.json` (readable by the index's owner only; `lookalike.api.server_file`): it is
accepted like an API key, and on its own it turns writes on for that CLI alone. `check` is the one
place that decides.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar, TypeVarTuple

import anyio
from fastapi import Header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from lookalike.api.http_errors import MiB
from lookalike.api.served_files import Thumbnails, catalogue_images, face_photos
from lookalike.errors import DecodeError, StoreError

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.api.item_writes import ItemWriter
    from lookalike.engine.core import Engine
    from lookalike.faces.index import FaceIndex

log = logging.getLogger("lookalike.http")

T = TypeVar("T")
Args = TypeVarTuple("Args")

KEY_HEADER = "X-API-Key"
KeyHeader = Annotated[str | None, Header()]
"""A route's `x_api_key: KeyHeader = None` parameter: the X-API-Key header, passed to `check`."""


@dataclass(frozen=True)
class WriteAccess:
    """The credentials that allow writes.

    keys: API keys (`--api-key`): writes are on for whoever sends one.
    local: secrets of the server's own machine (`server.json`), accepted like keys; with no API
        key, everyone else is answered 403 ("writes are off").
    read_only: no write is allowed at all, whatever is sent.
    """

    keys: tuple[str, ...] = ()
    read_only: bool = False
    local: tuple[str, ...] = ()

    @classmethod
    def from_keys(
        cls,
        keys: Iterable[str | None],
        *,
        read_only: bool = False,
        local: Iterable[str | None] = (),
    ) -> WriteAccess:
        """Empty and missing keys are dropped (an empty key would let an empty header write)."""
        return cls(tuple(k for k in keys if k), read_only, tuple(k for k in local if k))

    @property
    def enabled(self) -> bool:
        """Whether clients other than this machine's CLI may write (an API key is set)."""
        return bool(self.keys) and not self.read_only

    def check(self, given: str | None) -> None:
        """Return when a request carrying header value `given` may write; else HTTPException:
        403 when writes are off on this server (for this client), 401 when the key is missing or
        wrong.

        Every configured credential is compared in constant time, whether or not an earlier one
        matched.
        """
        if self.read_only:
            raise HTTPException(
                403, "this server is read-only (started with --read-only): it takes no writes"
            )
        ok = False
        for key in (*self.keys, *self.local):
            if given is not None and hmac.compare_digest(given.encode(), key.encode()):
                ok = True
        if ok:
            return
        if not self.keys:
            raise HTTPException(
                403,
                "writes are off on this server: start it with --api-key KEY (or set "
                f"LOOKALIKE_API_KEY) and send the header {KEY_HEADER}: KEY to add or delete items",
            )
        raise HTTPException(
            401,
            f"this server needs the header {KEY_HEADER} to add or delete items",
            headers={"WWW-Authenticate": KEY_HEADER},
        )


class AppState:
    """What the endpoints share: the engine, the write lock, limits and caches."""

    def __init__(
        self,
        engine: Engine,
        api_key: str | None,
        max_upload_bytes: int,
        catalogue_root: Path | None,
        search_threads: int,
        faces: FaceIndex | None = None,
    ) -> None:

        from lookalike.engine import wiring

        self.engine = engine
        self.api_key = api_key or None
        self.access = WriteAccess.from_keys([api_key])
        self.writer: ItemWriter  # set by create_app
        self.max_upload_bytes = max_upload_bytes
        self.images = catalogue_images(engine, catalogue_root)
        self.thumbnails = Thumbnails()
        self._faces = faces
        self._faces_lock = threading.Lock()
        self.face_search_lock = threading.Lock()
        """dlib's detector and network are not documented as thread-safe: one face search at a time."""
        self.face_photos = face_photos(self.face_index, catalogue_root, engine.index_dir)
        self._warm_lock = threading.Lock()
        self._told_no_index = False
        self.ready = False
        self._search_threads = max(1, search_threads)
        self._limiter: anyio.CapacityLimiter | None = None
        settings = engine.settings
        self.decode_limits = wiring.limits(settings, max_bytes=max_upload_bytes)
        self.catalogue_limits = wiring.limits(settings)

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

    async def read(self, fn: Callable[[*Args], T], *args: *Args) -> T:
        """Run a blocking read (store, disk) on a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args)

    async def run_search(self, fn: Callable[[*Args], T], *args: *Args) -> T:
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

    def decode(self, data: bytes, *, full_size: bool = False) -> Image.Image:
        from lookalike.pipeline.decode import decode_image

        limits = replace(self.decode_limits, draft_size=None) if full_size else self.decode_limits
        return decode_image(data, "upload", limits)

    # -- find people -----------------------------------------------------------------------------

    def face_index(self) -> FaceIndex:
        """The face index, opened once (StoreError, hence 503, while there is none). Blocking."""
        with self._faces_lock:
            if self._faces is None:
                from lookalike.faces.index import FaceIndex

                self._faces = FaceIndex(self.engine.index_dir, self.engine.settings)
            _ = self._faces.store  # opens the shard, or says there is no face index yet
            return self._faces
