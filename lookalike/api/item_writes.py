"""Adding, replacing and deleting items through the HTTP API (`POST`/`DELETE /api/items`).

An add runs in two halves:

1. Outside the write lock (so a slow photo holds up nobody else): check the item (id, image
   references, local paths under the catalogue root with links resolved), decode-check each
   uploaded photo, download each image URL under the rules of `remote_images` (address check on
   every hop, whole-download deadline), decode-check it, and keep every photo under
   `<index>/uploads/` named by its sha256 (`uploads.Uploads`). Image URLs are indexed from that
   copy: the index never fetches a URL on its own, and shows `uploads/...` for it.
2. Under the write lock (`writes.WriteGate`, which drops the write if its client has gone): index
   the item, then remove the uploads no view records any more (a replaced item's dropped photos,
   a failed add's own). A delete removes its item's uploads the same way.

A URL that cannot be used is a `skipped` entry with a generic reason (as the engine reports a bad
photo); an item left with no usable photo is not added (422).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

from lookalike.api.served_files import ServedFiles, redact, under
from lookalike.api.uploads import Uploads
from lookalike.api.writes import WriteGate
from lookalike.catalog.manifest import catalogue_item, image_refs, item_fields, item_id_of
from lookalike.errors import DecodeError, QueryError

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.api.remote_images import FetchPolicy
    from lookalike.engine.core import Engine


log = logging.getLogger("lookalike.http")

_PRUNE_WAIT_S = 600.0
"""Longest a failed add's clean-up waits for the write lock."""


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
