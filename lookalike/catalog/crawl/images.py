"""Product images: fetched once per URL, checked to be real pictures, saved under SHOP/images/.

    SHOP/images/<item slug>-<8 hex of the item id>/<file slug>-<10 hex of the URL>.<ext>

Every part of the path is generated (`safety.slug` + a hash), the extension comes from the
file's first bytes, never from the URL, and `safety.safe_join` checks the result stays inside
SHOP/: no name, path or id a page contains can place a file elsewhere. Files are written to a
temporary name and renamed, so a killed crawl never leaves half an image under a real name.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.safety import safe_join, slug, sniff_image
from lookalike.catalog.crawl.state import CrawlState, ImageRecord
from lookalike.errors import FetchError

IMAGES_DIR = "images"


@dataclass(frozen=True)
class Saved:
    """One image of an item: its record, and whether this run had to download it."""

    record: ImageRecord
    downloaded: bool


def item_folder(item_id: str) -> str:
    """The folder name of an item's images (readable slug + hash: distinct ids never collide)."""
    digest = hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:8]
    return f"{slug(item_id, 40) or 'item'}-{digest}"


def image_name(url: str, ext: str) -> str:
    """The file name of the image at `url` with extension `ext` (from the sniffed format)."""
    stem = PurePosixPath(unquote(urlsplit(url).path)).stem
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:10]
    return f"{slug(stem, 40) or 'image'}-{digest}.{ext}"


def check_picture(data: bytes, max_bytes: int) -> tuple[int, int]:
    """(width, height) of an image file the indexer can decode; FetchError with the reason if not.

    The same decoder as indexing (size, pixel-count and format limits, truncation is an error),
    at reduced JPEG resolution since only validity is in question here.
    """
    from PIL import Image

    from lookalike.errors import DecodeError
    from lookalike.pipeline.decode import DecodeLimits, decode_image

    try:
        decode_image(data, "", DecodeLimits(max_bytes=max_bytes, draft_size=256))
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except DecodeError as exc:
        raise FetchError(f"broken image: {exc}") from None
    except Exception as exc:  # Pillow's header parser after a successful decode: unlikely
        raise FetchError(f"broken image: {type(exc).__name__}: {exc}") from None


class ImageSaver:
    """Downloads, checks and stores images for one crawl; one download per URL even when several
    products (or tasks) ask for the same image at once."""

    def __init__(
        self, root: Path, client: PoliteClient, state: CrawlState, *, min_side: int = 100
    ) -> None:
        self.root = root
        self.client = client
        self.state = state
        self.min_side = min_side
        self._inflight: dict[str, asyncio.Future[Saved]] = {}
        self._writing: dict[str, asyncio.Future[ImageRecord]] = {}

    async def save(self, url: str, item_id: str) -> Saved:
        """The image at `url`, from SHOP/ when already there, else downloaded and saved.

        Raises FetchError (HTTP error, not an image, broken, too small, too large, refused).
        """
        known = self.state.image(url)
        if known is not None:
            return Saved(known, downloaded=False)
        pending = self._inflight.get(url)
        if pending is not None:
            saved = await asyncio.shield(pending)
            return Saved(saved.record, downloaded=False)
        future: asyncio.Future[Saved] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            saved = await self._download(url, item_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: only waiters that exist should see it
            raise
        else:
            future.set_result(saved)
            return saved
        finally:
            del self._inflight[url]

    async def _download(self, url: str, item_id: str) -> Saved:
        answer = self.client.recall(url) or await self.client.get(url, kind="image")
        if not answer.ok:
            raise FetchError(f"HTTP {answer.status}", status=answer.status)
        data = answer.body
        ext = sniff_image(data)
        if ext is None:
            shown = answer.media_type or "no content type"
            raise FetchError(f"not a picture ({shown}, starts with {data[:8]!r})")
        width, height = await asyncio.to_thread(
            check_picture, data, self.client.limits.max_image_bytes
        )
        if min(width, height) < self.min_side:
            raise FetchError(f"too small to be a product photo ({width}x{height} px)")
        sha = hashlib.sha256(data).hexdigest()
        same = self.state.image_by_sha(sha)
        if same is None and sha in self._writing:  # being saved under another URL right now
            same = await asyncio.shield(self._writing[sha])
        if same is not None:  # the same picture under another URL: one file
            record = ImageRecord(url, same.path, sha, width, height, len(data))
            self.state.add_image(record)
            return Saved(record, downloaded=True)
        written: asyncio.Future[ImageRecord] = asyncio.get_running_loop().create_future()
        self._writing[sha] = written
        try:
            folder, name = item_folder(item_id), image_name(url, ext)
            path = safe_join(self.root, IMAGES_DIR, folder, name)
            await asyncio.to_thread(_write_file, path, data)
            record = ImageRecord(
                url, f"{IMAGES_DIR}/{folder}/{name}", sha, width, height, len(data)
            )
            self.state.add_image(record)
            written.set_result(record)
        except BaseException as exc:
            written.set_exception(exc if isinstance(exc, Exception) else FetchError("cancelled"))
            written.exception()  # retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._writing[sha]
        return Saved(record, downloaded=True)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
