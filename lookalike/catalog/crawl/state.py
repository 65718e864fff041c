"""The crawl's memory in SHOP/.crawl/: what is finished, so a rerun resumes or updates.

    SHOP/.crawl/state.jsonl   append-only journal, one JSON record per line, flushed line by line:
                              a kill -9 loses at most the line being written, and a torn last line
                              is ignored when the journal is read back
    SHOP/.crawl/lock          held (flock) while a crawl runs: a second crawl into SHOP/ is refused

Generations: one complete pass over the URL list is a generation. A run that finds the last
generation unfinished (interrupted by Ctrl-C, kill -9, a crash) resumes it: listing pages and
products finished in it are not fetched again, failed ones are tried again. A run after a finished
generation starts the next one: pages are fetched again, conditionally (If-None-Match /
If-Modified-Since), so an unchanged page costs a 304 and a changed one updates its item. An image
is fetched once per URL, ever (its file is fetched again only if it was deleted from SHOP/).

The journal is compacted (rewritten atomically with only the latest record of each thing) each
time a crawl opens it, so it grows with the shop, not with the number of runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from lookalike.errors import CrawlError

STATE_DIR = ".crawl"
CATALOGUE = "catalogue.jsonl"


@dataclass(frozen=True)
class ImageRecord:
    """A downloaded image: `path` is relative to SHOP/ (POSIX separators); sizes in pixels/bytes."""

    url: str
    path: str
    sha256: str
    width: int
    height: int
    bytes: int


@dataclass(frozen=True)
class ProductRecord:
    """The latest visit of one product page.

    item: the catalogue line (image paths relative to SHOP/); empty when `gone`.
    rank: discovery order (seed, listing page, position) that orders the catalogue.
    etag, last_modified, body_sha256: what tells a changed page from an unchanged one.
    rendered: the page needed the browser (a rerun goes to the browser directly).
    gone: the page answered 404/410: the item left the shop and the catalogue.
    """

    url: str
    gen: int
    rank: tuple[int, ...]
    item: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None
    rendered: bool = False
    gone: bool = False


@dataclass(frozen=True)
class ListingRecord:
    """A listing page finished in generation `gen`: the product links and next pages it gave."""

    url: str
    gen: int
    products: tuple[str, ...]
    next_pages: tuple[str, ...]
    rendered: bool = False


class CrawlState:
    """The journal of one SHOP/ folder (see the module docstring). Open with `CrawlState.open`.

    generation: the generation this run works on (1 for a first crawl).
    resumed: True when this run continues an interrupted generation.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        self.resumed = False
        self._dir = root / STATE_DIR
        self._lock: IO[str] | None = None
        self._journal: IO[str] | None = None
        self._images: dict[str, ImageRecord] = {}
        self._by_sha: dict[str, ImageRecord] = {}
        self._products: dict[str, ProductRecord] = {}
        self._listings: dict[str, ListingRecord] = {}

    @classmethod
    def open(cls, root: Path) -> CrawlState:
        """Lock SHOP/, read and compact the journal, and start or resume a generation.

        Raises CrawlError when another crawl holds SHOP/ or the journal cannot be written.
        """
        state = cls(root)
        try:
            state._dir.mkdir(parents=True, exist_ok=True)
            state._lock = open(state._dir / "lock", "w")  # noqa: SIM115 (held until close)
        except OSError as exc:
            raise CrawlError(f"cannot write to {state.root}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(state._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            state._lock.close()
            raise CrawlError(
                f"another crawl is writing to {state.root}; wait for it to finish"
            ) from None
        try:
            state._load()
            state._compact()
            state._journal = open(state._dir / "state.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            state.close()
            raise CrawlError(f"cannot write the crawl state in {state._dir}: {exc}") from None
        state._append({"e": "gen", "gen": state.generation, "done": False})
        return state

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> CrawlState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------

    def _load(self) -> None:
        path = self._dir / "state.jsonl"
        last_gen, done = 0, True
        products: dict[str, ProductRecord] = {}
        listings: dict[str, ListingRecord] = {}
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    rec = json.loads(line)
                    match rec.pop("e"):
                        case "gen":
                            last_gen, done = int(rec["gen"]), bool(rec["done"])
                        case "image":
                            self._put_image(ImageRecord(**rec))
                        case "product":
                            rec["rank"] = tuple(rec["rank"])
                            products[rec["url"]] = ProductRecord(**rec)
                        case "listing":
                            rec["products"] = tuple(rec["products"])
                            rec["next_pages"] = tuple(rec["next_pages"])
                            listings[rec["url"]] = ListingRecord(**rec)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill, or from a newer version
        if last_gen and not done:
            self.generation, self.resumed = last_gen, True
        else:
            self.generation = last_gen + 1
        self._products = products
        self._listings = {u: r for u, r in listings.items() if r.gen == self.generation}

    def _compact(self) -> None:
        records: list[dict[str, Any]] = (
            [{"e": "gen", "gen": self.generation, "done": False}] if self.resumed else []
        )
        records += [{"e": "image", **asdict(r)} for r in self._images.values()]
        records += [{"e": "product", **asdict(r)} for r in self._products.values()]
        records += [{"e": "listing", **asdict(r)} for r in self._listings.values()]
        _write_atomic(self._dir / "state.jsonl", (json.dumps(r) + "\n" for r in records))

    def image(self, url: str) -> ImageRecord | None:
        """The image downloaded from `url` whose file is still in SHOP/, else None."""
        return self._on_disk(self._images.get(url))

    def image_by_sha(self, sha256: str) -> ImageRecord | None:
        """An image already saved with these bytes (from any URL) whose file is still there."""
        return self._on_disk(self._by_sha.get(sha256))

    def _on_disk(self, rec: ImageRecord | None) -> ImageRecord | None:
        """`rec` when its file is in SHOP/ with its size, else None."""
        try:
            return rec if rec and (self.root / rec.path).stat().st_size == rec.bytes else None
        except OSError:
            return None

    def product(self, url: str) -> ProductRecord | None:
        """The latest visit of product page `url` (any generation), else None."""
        return self._products.get(url)

    def product_done(self, url: str) -> bool:
        """True when `url` was finished (or found gone) in this generation."""
        rec = self._products.get(url)
        return rec is not None and rec.gen == self.generation

    def listing(self, url: str) -> ListingRecord | None:
        """The listing page `url` if it was finished in this generation, else None."""
        return self._listings.get(url)

    def items(self) -> list[dict[str, Any]]:
        """Catalogue lines: every product's latest item (gone ones left out), in discovery order;
        items sharing an id are one line (images in order, each once; first value of each field)."""
        merged: dict[str, dict[str, Any]] = {}
        for rec in sorted(self._products.values(), key=lambda r: (r.rank, r.url)):
            if rec.gone or not rec.item.get("images"):
                continue
            item = dict(rec.item)
            have = merged.setdefault(item["id"], item)
            if have is item:  # the first line of this id
                continue
            have["images"] = list(dict.fromkeys([*have["images"], *item["images"]]))
            for key, value in item.items():
                if have.get(key) is None:
                    have[key] = value
        return list(merged.values())

    # -- writing --------------------------------------------------------------------------------

    def _append(self, record: Mapping[str, Any]) -> None:
        assert self._journal is not None, "state is closed"
        self._journal.write(json.dumps(record) + "\n")
        self._journal.flush()  # to the OS: a kill -9 of this process cannot lose it any more

    def _put_image(self, rec: ImageRecord) -> None:
        self._images[rec.url] = rec
        self._by_sha.setdefault(rec.sha256, rec)

    def add_image(self, rec: ImageRecord) -> None:
        self._put_image(rec)
        self._append({"e": "image", **asdict(rec)})

    def add_product(self, rec: ProductRecord) -> None:
        self._products[rec.url] = rec
        self._append({"e": "product", **asdict(rec)})

    def add_listing(self, rec: ListingRecord) -> None:
        self._listings[rec.url] = rec
        self._append({"e": "listing", **asdict(rec)})

    def finish(self) -> None:
        """Mark this generation complete: the next run starts a new one."""
        self._append({"e": "gen", "gen": self.generation, "done": True})
        self.sync()

    def sync(self) -> None:
        """Make the journal durable on disk (power loss, not just a killed process)."""
        if self._journal is not None:
            os.fsync(self._journal.fileno())


def write_catalogue(root: Path, items: Iterable[Mapping[str, Any]]) -> Path:
    """Write SHOP/catalogue.jsonl atomically (a reader sees the old file or the new one, whole)."""
    path = root / CATALOGUE
    _write_atomic(path, (json.dumps(dict(item), ensure_ascii=False) + "\n" for item in items))
    return path


def _write_atomic(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable (not on every platform)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
