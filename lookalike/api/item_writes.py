"""Adding, replacing and deleting items through the HTTP API (`POST`/`DELETE /api/items`).

An add runs in two halves:

1. Outside the write lock (so a slow photo holds up nobody else): check the item (id, image
   references, local paths under the catalogue root with links resolved), decode-check each
   uploaded photo, download each image URL under the rules of `remote_images` (address check on
   every hop, whole-download deadline), decode-check it, and keep every photo under
   `<index>/uploads/` named by its sha256 (`Uploads`). Image URLs are indexed from that
   copy: the index never fetches a URL on its own, and shows `uploads/...` for it.
2. Under the write lock (`WriteGate`, which drops the write if its client has gone): index
   the item, then remove the uploads no view records any more (a replaced item's dropped photos,
   a failed add's own). A delete removes its item's uploads the same way.

A URL that cannot be used is a `skipped` entry with a generic reason (as the engine reports a bad
photo); an item left with no usable photo is not added (422).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

from lookalike.api.served_files import ServedFiles, norm, redact, under
from lookalike.catalog.manifest import catalogue_item, image_refs, item_fields, item_id_of
from lookalike.errors import DecodeError, QueryError

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.api.remote_images import FetchPolicy
    from lookalike.engine.core import Engine


log = logging.getLogger("lookalike.http")
T = TypeVar("T")
Args = TypeVarTuple("Args")

_PRUNE_WAIT_S = 600.0
"""Longest a failed add's clean-up waits for the write lock."""
_POLL_S = 0.1


class WriteAbandoned(Exception):
    """The client went away before its write started: nothing was written."""


class WriteGate:
    """Writes through the HTTP API: one at a time, and never one whose request is gone.

    The engine's file lock refuses a second writer even in-process, so writes (add, replace,
    delete) take turns under one lock. The slow parts of an add (reading uploads, downloading URLs,
    decoding) happen before, outside the lock; under it only the index update runs.

    A write waits for its turn at most `wait_s`, then answers 503 and changes nothing. While it
    waits, its client may give up (a timeout, a closed tab): the request's disconnection is watched,
    and a write whose client is gone is dropped before it starts, so no change lands after its
    request failed. Once started, a write finishes (a half-applied item would be worse).

    `lock` is also held by in-process code that must not overlap a write.
    """

    def __init__(self, wait_s: float = 300.0, threads: int = 4) -> None:
        self.lock = threading.Lock()
        self.wait_s = wait_s
        # Writes waiting for the lock hold a worker thread each: a few at most, so a burst of
        # writes cannot take the threads that searches and reads run on. The rest queue here.
        self._threads = max(1, threads)
        self._limiter: anyio.CapacityLimiter | None = None  # made on the event loop, on first use

    async def run(self, request: Request | None, fn: Callable[[*Args], T], *args: *Args) -> T:
        """`fn(*args)` on a worker thread, holding the lock, unless `request`'s client has gone
        first (HTTPException 499, nothing written) or the lock stays busy past `wait_s` (503)."""
        gone = threading.Event()
        if request is not None and await request.is_disconnected():
            raise _abandoned()

        deadline = time.monotonic() + self.wait_s  # queueing for a thread counts too

        def guarded() -> T:
            while not self.lock.acquire(timeout=_POLL_S):
                if gone.is_set():
                    raise WriteAbandoned
                if time.monotonic() > deadline:
                    raise HTTPException(
                        503,
                        f"the server is busy with other writes (waited {self.wait_s:g} s); "
                        "nothing was written, try again",
                        headers={"Retry-After": "5"},
                    )
            try:
                if gone.is_set():
                    raise WriteAbandoned
                return fn(*args)
            finally:
                self.lock.release()

        async def watch() -> None:
            while request is not None:
                if await request.is_disconnected():
                    gone.set()
                    return
                await anyio.sleep(_POLL_S)

        outcome: list[T | BaseException] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:  # kept, raised after the group: a task group would wrap it in a group
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(self._threads)
                outcome.append(await anyio.to_thread.run_sync(guarded, limiter=self._limiter))
            except BaseException as exc:
                outcome.append(exc)
            finally:
                tg.cancel_scope.cancel()
        if isinstance(outcome[0], WriteAbandoned):
            raise _abandoned()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]


def _abandoned() -> HTTPException:
    return HTTPException(499, "the client closed the request before its write: nothing written")


_SUFFIX_FOR_FORMAT = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tiff",
    "AVIF": ".avif",
    "HEIF": ".heic",
}


class Uploads:
    """Photos the HTTP server keeps for items: `<index>/uploads/<2 hex>/<sha256>.<ext>`.

    Uploaded photos and the images of item URLs (downloaded once, see `remote_images`) are saved
    here, named by their content, and indexed from here. A file is kept while a view of the index
    records it: `prune` removes the ones no view records any more (after a delete, after a replace
    that dropped a photo, after an add that failed), so uploads never pile up orphaned.

    Blocking methods (disk).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(norm(str(folder)))

    def save(self, data: bytes) -> tuple[str, bool]:
        """(path, created): `data` kept under its sha256 (an already kept photo is reused).

        The caller has checked that `data` decodes. Written atomically: a half-written photo is
        never indexed.
        """
        digest = hashlib.sha256(data).hexdigest()
        folder = self.folder / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}{_suffix(data)}"
        if path.exists():
            return str(path), False
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return str(path), True

    def owns(self, path: str) -> bool:
        return under(norm(path), str(self.folder))

    def prune(self, paths: Iterable[str], in_use: Callable[[str], bool]) -> list[str]:
        """Remove those of `paths` that lie here and that `in_use` says no view records."""
        removed = []
        for path in dict.fromkeys(paths):
            if not self.owns(path) or in_use(path):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            removed.append(path)
            with contextlib.suppress(OSError):  # the 2-hex folder, when this was its last photo
                os.rmdir(os.path.dirname(path))
        return removed


def _suffix(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return _SUFFIX_FOR_FORMAT.get(img.format or "", ".img")
    except Exception:  # the caller decoded it already; a name is all that is at stake
        return ".img"


@dataclass(frozen=True)
class _Photo:
    """A photo kept under uploads: its path, its bytes (to write it again should a concurrent
    failed add have pruned it meanwhile) and whether this request created the file."""

    path: str
    data: bytes
    created: bool


class ItemWriter:
    """The write endpoints' logic over one engine (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        images: ServedFiles,
        decode: Callable[[bytes], Image.Image],
        item_out: Callable[[str], dict[str, Any]],
        policy: FetchPolicy,
        gate: WriteGate,
    ) -> None:
        self.engine = engine
        self.images = images
        self.decode = decode
        self.item_out = item_out
        self.policy = policy
        self.gate = gate
        self.uploads = Uploads(engine.index_dir / "uploads")

    # -- add -------------------------------------------------------------------------------------

    async def add(
        self, request: Request | None, obj: Mapping[str, Any], uploads: list[bytes]
    ) -> dict[str, Any]:
        """Add or replace the item `obj` (a manifest line) with `uploads`; the answer's body."""
        from lookalike.api.remote_images import fetch_images

        item_id = item_id_of(obj.get("id"))
        refs = image_refs(obj)
        if not refs and not uploads:
            raise QueryError(f"item {item_id!r} has no images: give `images` or upload `photos`")
        slots: list[str | None] = [self._local_or_url(r) for r in refs]
        fields = item_fields(obj)
        kept: list[_Photo] = []
        skipped: list[dict[str, str]] = []
        try:
            for data in uploads:  # the client's own files: their decode errors are theirs (4xx)
                kept.append(await anyio.to_thread.run_sync(self._keep, data))
            urls = [i for i, s in enumerate(slots) if s is not None and _is_url(s)]
            fetched = await fetch_images([refs[i].strip() for i in urls], self.policy)
            for i, got in zip(urls, fetched, strict=True):
                slots[i] = None
                reason = str(got) if isinstance(got, DecodeError) else None
                if not isinstance(got, DecodeError):  # reason is None: the photo's bytes
                    try:
                        photo = await anyio.to_thread.run_sync(self._keep, got)
                        kept.append(photo)
                        slots[i] = photo.path
                    except DecodeError:  # what the URL held stays unsaid
                        reason = f"image URL {refs[i].strip()!r} could not be used as an image"
                if reason is not None:
                    skipped.append({"source": refs[i].strip(), "reason": reason})
            images = [s for s in slots if s is not None]
            images += [p.path for p in kept[: len(uploads)]]
            if not images:
                reasons = "; ".join(s["reason"] for s in skipped)
                raise DecodeError(
                    f"item {item_id!r} was not added: no image could be used ({reasons})"
                )
            return await self.gate.run(request, self._apply, item_id, images, fields, kept, skipped)
        except BaseException:
            created = [p.path for p in kept if p.created]
            if created:  # in the background: the answer need not wait for the lock
                threading.Thread(
                    target=self._prune_locked, args=(created,), name="prune-uploads", daemon=True
                ).start()
            raise

    def _local_or_url(self, ref: str) -> str:
        """An http(s) URL as given, or a local path that must lie under the catalogue root."""
        ref = ref.strip()
        scheme = ref.split(":", 1)[0].lower() if ":" in ref else ""
        if scheme in ("http", "https"):
            return ref
        if len(scheme) > 1:
            raise QueryError(f"image {ref!r}: only http(s) URLs and catalogue paths are accepted")
        root = self.images.root
        if root is None:
            raise QueryError(
                f"image {ref!r}: this server has no catalogue root, so it takes only http(s) URLs "
                "and uploaded photos (start it with --catalogue-root to allow local paths)"
            )
        # Links resolved: a link under the root that leads elsewhere is outside it.
        path = os.path.realpath(os.path.join(root, ref))
        if not under(path, root):
            raise QueryError(f"image {ref!r} is outside the catalogue root")
        return path

    def _keep(self, data: bytes) -> _Photo:
        """Check the photo decodes (DecodeError before anything is written), then keep it."""
        self.decode(data)
        path, created = self.uploads.save(data)
        return _Photo(path, data, created)

    def _apply(
        self,
        item_id: str,
        images: list[str],
        fields: dict[str, Any],
        kept: list[_Photo],
        skipped_before: list[dict[str, str]],
    ) -> dict[str, Any]:
        """Index the item. Runs under the write lock, on a worker thread."""
        for photo in kept:
            if not os.path.exists(photo.path):
                self.uploads.save(photo.data)
        engine = self.engine
        before = engine.item(item_id) if engine.manifest is not None else None
        summary = engine.index([catalogue_item(item_id, images, fields)])
        self.images.invalidate()
        stored = engine.item(item_id)
        dropped = list(before["images"]) if before else []
        self.uploads.prune([*dropped, *(p.path for p in kept)], self.in_use)
        skipped = skipped_before + [
            {"source": self.images.name(s.source), "reason": redact(s.reason)}
            for s in summary.skipped
        ]
        if stored is None:
            reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped)
            raise DecodeError(f"item {item_id!r} was not added: no image could be used ({reasons})")
        return {
            "item": self.item_out(item_id),
            "created": before is None,
            "images_embedded": summary.images_embedded,
            "images_unchanged": summary.images_unchanged,
            "skipped": skipped,
        }

    def _prune_locked(self, paths: list[str]) -> None:
        # Under the lock: a concurrent add may be about to index the same photo. Should the lock
        # stay busy for long, the photos stay (unused files, never a missing one).
        if not self.gate.lock.acquire(timeout=_PRUNE_WAIT_S):
            log.warning("uploads of a failed add left in place: the write lock stayed busy")
            return
        try:
            self.uploads.prune(paths, self.in_use)
        finally:
            self.gate.lock.release()

    # -- delete ----------------------------------------------------------------------------------

    async def delete(self, request: Request | None, item_id: str) -> dict[str, str]:
        return await self.gate.run(request, self._delete, item_id)

    def _delete(self, item_id: str) -> dict[str, str]:
        found = self.engine.item(item_id) if self.engine.manifest is not None else None
        if found is None:
            raise HTTPException(404, f"no item {item_id!r} in this index")
        self.engine.delete([item_id])
        self.images.invalidate()
        self.uploads.prune(found["images"], self.in_use)
        return {"deleted": item_id}

    # -- plumbing --------------------------------------------------------------------------------

    def in_use(self, path: str) -> bool:
        """True while a view of the index records `path`."""
        from lookalike.store.base import where

        return self.engine.store.count(where("kind", "view") & where("image", path)) > 0


def _is_url(ref: str) -> bool:
    """The scheme test of `_local_or_url` (any case): such a ref is downloaded here, never
    handed to the engine, which would fetch it without the address checks."""
    return ":" in ref and ref.split(":", 1)[0].lower() in ("http", "https")
