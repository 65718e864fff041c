"""The crawl: URL list in, SHOP/images/... and SHOP/catalogue.jsonl out.

Each URL of the list is a product page or a listing page (told apart by `extract.classify`):

- a listing gives product links (JSON-LD ItemList, product-card selectors ...) and is followed
  through its pagination ("next" links, numbered `?page=N` links, `?page=N+1` when the URL has a
  page number; in the browser, infinite scroll) up to `max_pages` listing pages and
  `max_products` products in all;
- a product page gives an item (`extract.extract_product`; on a rendered page completed by the
  generic reader, `generic.product_of`) whose images are downloaded, checked and saved
  (`images.ImageSaver`);
- a sitemap (a `.xml` seed, or with `sitemaps` those robots.txt names) gives product pages
  (`discover.read_sitemaps`); a listing's "load more" button is clicked in the browser, each
  click counting as a listing page.

`render="auto"` fetches pages statically and renders a page in Chromium only when the static
HTML yields no product images (a product page) or no product links (a listing); a product that
needed the browser goes straight to it on the next crawl. Every request goes through one
`PoliteClient` (robots.txt, per-host rate and concurrency, retries, safety checks).

A bad page or image never stops the crawl: it is recorded as `Skipped(url, reason)` in the
summary. The run is journaled in SHOP/.crawl/ (see `state`), so it can be killed at any moment
and rerun: finished work is skipped, and a crawl after a finished one updates changed items.
SHOP/catalogue.jsonl is rewritten atomically every few seconds and at the end, interrupted or not.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from lookalike.catalog.crawl.browser import BrowserFetcher, find_chromium
from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.discover import (
    has_load_more,
    host_sitemaps,
    is_sitemap_url,
    read_sitemaps,
)
from lookalike.catalog.crawl.extract import ProductData, extract_listing
from lookalike.catalog.crawl.fetch import Page, ScrollGoal, StaticFetcher, Validators
from lookalike.catalog.crawl.generic import page_kind, product_of
from lookalike.catalog.crawl.images import ImageSaver
from lookalike.catalog.crawl.listing import ListingData, guess_next_page
from lookalike.catalog.crawl.options import CrawlOptions, CrawlSummary, Progress, derive_id
from lookalike.catalog.crawl.safety import check_url
from lookalike.catalog.crawl.state import (
    CrawlState,
    ImageRecord,
    ListingRecord,
    ProductRecord,
    write_catalogue,
)
from lookalike.errors import CrawlError, FetchError, UnsafeURLError
from lookalike.types import Skipped

# The content type of each extension `safety.sniff_image` gives a saved image.
_IMAGE_TYPES = {ext: f"image/{ext}" for ext in ("png", "webp", "gif", "bmp", "avif", "heic")}
_IMAGE_TYPES |= {"jpg": "image/jpeg", "tif": "image/tiff"}
# The product counters, each `CrawlSummary.products_<name>`.
_PRODUCT_COUNTS = ("new", "updated", "unchanged", "resumed", "gone")


class Crawler:
    def __init__(
        self, seeds: Sequence[str], root: Path, options: CrawlOptions, progress: Progress | None
    ) -> None:
        self.seeds = seeds
        self.root = root
        self.options = options
        self.notify = progress or (lambda stage, done, total: None)
        self.counts: collections.Counter[str] = collections.Counter()
        self.failures: dict[str, Skipped] = {}
        self.scheduled: dict[str, tuple[int, ...]] = {}
        self.listings_seen: set[str] = set()
        self.listing_budget = options.max_pages
        self.limit_reached = False
        self.dirty = False
        self.products_done = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers = asyncio.Semaphore(options.workers)
        # Set in run():
        self.state: CrawlState
        self.client: PoliteClient
        self.static: StaticFetcher
        self.browser: BrowserFetcher | None
        self.images: ImageSaver

    async def run(self) -> CrawlSummary:
        started = time.monotonic()
        opts = self.options
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CrawlError(f"cannot create {self.root}: {exc.strerror or exc}") from None
        if opts.render == "browser":
            try:
                find_chromium(opts.browser.executable)
            except FetchError as exc:
                raise CrawlError(str(exc)) from None
        self.state = CrawlState.open(self.root)
        try:
            async with PoliteClient(opts.politeness, opts.safety) as client:
                self.client = client
                self.static = StaticFetcher(client)
                self.browser = (
                    BrowserFetcher(client, opts.browser, local_images=self._local_image)
                    if opts.render != "static"
                    else None
                )
                self.images = ImageSaver(
                    self.root, client, self.state, min_side=opts.min_image_side
                )
                checkpoints = asyncio.create_task(self._checkpoints())
                try:
                    await self._crawl_all()
                finally:
                    checkpoints.cancel()
                    if self.browser is not None:
                        await self.browser.aclose()
            self.state.finish()
        finally:
            # Interrupted or not: the catalogue holds everything finished so far.
            catalogue = write_catalogue(self.root, self.state.items())
            self.state.sync()
            self.state.close()
        return CrawlSummary(
            catalogue=catalogue,
            items=len(self.state.items()),
            generation=self.state.generation,
            resumed=self.state.resumed,
            listing_pages=self.counts["listing pages"],
            **{f"products_{k}": self.counts[k] for k in _PRODUCT_COUNTS},
            images_downloaded=self.counts["downloaded"],
            images_reused=self.counts["reused"],
            pages_rendered=self.browser.pages_opened if self.browser else 0,
            requests=sum(self.client.requests.values()),
            limit_reached=self.limit_reached,
            failures=tuple(self.failures.values()),
            seconds=time.monotonic() - started,
        )

    async def _crawl_all(self) -> None:
        seeds = [asyncio.create_task(self._seed(i, url)) for i, url in enumerate(self.seeds)]
        if self.options.sitemaps:
            seeds.append(asyncio.create_task(self._host_sitemaps()))
        self._tasks.update(seeds)
        try:
            while self._tasks:
                done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._tasks.discard(task)
                    task.result()  # a bug or a crawl-wide error (disk full) stops the crawl
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.options.checkpoint_s)
            if self.dirty:
                self.dirty = False
                write_catalogue(self.root, self.state.items())

    def _local_image(self, url: str) -> tuple[bytes, str] | None:
        """(bytes, content type) of an image this crawl has in SHOP/ already, else None."""
        try:
            record = self.state.image(check_url(url))
            if record is None:
                return None
            data = (self.root / record.path).read_bytes()
        except (UnsafeURLError, OSError):
            return None
        suffix = PurePosixPath(record.path).suffix.lstrip(".")
        return data, _IMAGE_TYPES.get(suffix, "application/octet-stream")

    def _fail(self, url: str, reason: str) -> None:
        self.failures[url] = Skipped(url, reason)

    # -- seeds and listings -------------------------------------------------------------------

    async def _seed(self, index: int, raw: str) -> None:
        try:
            url = check_url(raw)
        except UnsafeURLError as exc:
            self._fail(raw, str(exc))
            return
        if is_sitemap_url(url):
            await self._sitemaps(index, [url])
            return
        if self.state.listing(url) is not None:
            await self._listing_chain(url, index)
            return
        if self.state.product(url) is not None:  # known product page: no need to classify
            self._schedule_product(url, (index, 0, 0))
            return
        try:
            page, kind, product, listing = await self._classified(url)
        except FetchError as exc:
            self._fail(url, str(exc))
            return
        match kind:
            case "product":
                self._schedule_product(url, (index, 0, 0), page, product)
            case "listing":
                await self._listing_chain(url, index, first=(page, listing))
            case _:
                how = "rendered in a browser" if page.rendered else "static HTML"
                self._fail(url, f"no product and no product links found ({how})")

    async def _host_sitemaps(self) -> None:
        """The sitemaps of every seed host (`CrawlOptions.sitemaps`)."""
        roots: list[str] = []
        for raw in dict.fromkeys(self.seeds):
            try:
                roots += await host_sitemaps(self.client, check_url(raw))
            except FetchError as exc:
                self._fail(raw, f"sitemap: {exc}")
        await self._sitemaps(len(self.seeds), roots)

    async def _sitemaps(self, index: int, roots: list[str]) -> None:
        found = await read_sitemaps(self.client, roots)
        for failure in found.failures:
            self._fail(failure.source, failure.reason)
        for pos, url in enumerate(found.urls):
            self._schedule_product(url, (index, 0, pos))

    async def _classified(self, url: str) -> tuple[Page, str, ProductData | None, ListingData]:
        """A seed page, fetched and told apart; rendered when its static HTML says nothing."""
        if self.options.render == "browser":
            page = await self._render(url, listing=True)
            return (page, *page_kind(page, self.options.selectors))
        page = await self.static.fetch(url)
        kind, product, listing = page_kind(page, self.options.selectors)
        needs_browser = (
            kind == "none"
            or (kind == "product" and product is not None and not product.images)
            or (kind == "listing" and has_load_more(page.html))
        )
        if needs_browser and self.options.render == "auto":
            page = await self._render(url, listing=kind != "product")
            kind, product, listing = page_kind(page, self.options.selectors)
        return page, kind, product, listing

    async def _render(self, url: str, *, listing: bool) -> Page:
        """`url` rendered; a listing is scrolled for products, and its "load more" buttons
        clicked as long as `max_pages` allows (each click is one listing page)."""
        assert self.browser is not None
        goal = None
        sel = self.options.selectors
        if listing:
            wanted = max(1, self.options.max_products - len(self.scheduled))
            goal = ScrollGoal(
                ", ".join(sel.product_links),
                wanted if sel.product_links else 1 << 30,
                load_more=max(0, self.listing_budget),
                button=", ".join(s for s in sel.next_page if "button" in s),
            )
        page = await self.browser.fetch(url, scroll_for=goal)
        if page.load_more:
            self.listing_budget -= page.load_more
            self.counts["listing pages"] += page.load_more
        if goal is not None and page.load_more >= goal.load_more and has_load_more(page.html):
            self.limit_reached = True  # a button is left that max_pages did not let us click
        return page

    async def _listing_chain(
        self, url: str, seed: int, first: tuple[Page, ListingData] | None = None
    ) -> None:
        """Follow one listing through its pages, scheduling the products it links to."""
        current: str | None = url
        number = 0
        guessed = False
        while current is not None and current not in self.listings_seen:
            self.listings_seen.add(current)
            record = self.state.listing(current)
            if record is None:
                if self.listing_budget <= 0:
                    self.limit_reached = True
                    return
                self.listing_budget -= 1
                try:
                    record = await self._fetch_listing(current, first if number == 0 else None)
                except FetchError as exc:
                    if not guessed:  # a guessed ?page=N+1 that fails just ends the listing
                        self._fail(current, str(exc))
                    return
                self.state.add_listing(record)
                self.counts["listing pages"] += 1
            else:
                self.listing_budget -= 1  # resumed pages count against the limit as well
            self.notify("listing pages", self.counts["listing pages"], 0)
            number += 1
            new = sum(
                self._schedule_product(link, (seed, number, pos))
                for pos, link in enumerate(record.products)
            )
            if self.limit_reached:
                return
            if number > 1 and new == 0:
                return  # a page with nothing new: the end of the listing (or a loop)
            current = next((n for n in record.next_pages if n not in self.listings_seen), None)
            # A listing ending in an error at `?page=N+1` is the usual end of a listing.
            guessed = current is not None and current == guess_next_page(record.url)

    async def _fetch_listing(
        self, url: str, first: tuple[Page, ListingData] | None
    ) -> ListingRecord:
        sel = self.options.selectors
        if first is not None:
            page, listing = first
        elif self.options.render == "browser":
            page = await self._render(url, listing=True)
            listing = extract_listing(page.html, page.url, sel)
        else:
            page = await self.static.fetch(url)
            listing = extract_listing(page.html, page.url, sel)
            more = not listing.products or has_load_more(page.html)
            if more and self.options.render == "auto":
                page = await self._render(url, listing=True)
                listing = extract_listing(page.html, page.url, sel)
        next_pages = listing.next_pages
        guess = guess_next_page(url)
        if listing.products and guess and guess not in next_pages:
            next_pages = (*next_pages, guess)  # `?page=N` without links to the next page
        return ListingRecord(
            url, self.state.generation, listing.products, next_pages, page.rendered
        )

    def _schedule_product(
        self,
        url: str,
        rank: tuple[int, ...],
        page: Page | None = None,
        data: ProductData | None = None,
    ) -> bool:
        """Start the product task for `url` unless it is scheduled already or over the limit."""
        if url in self.scheduled:
            return False
        if len(self.scheduled) >= self.options.max_products:
            self.limit_reached = True
            return False
        self.scheduled[url] = rank
        if len(self.scheduled) == self.options.max_products:
            self.limit_reached = True  # (a browser stops scrolling a listing here, too)
        self._tasks.add(asyncio.create_task(self._product_task(url, rank, page, data)))
        return True

    # -- products -----------------------------------------------------------------------------

    async def _product_task(
        self, url: str, rank: tuple[int, ...], page: Page | None, data: ProductData | None
    ) -> None:
        async with self._workers:
            try:
                await self._product(url, rank, page, data)
            except FetchError as exc:
                previous = self.state.product(url)
                if exc.status in (404, 410) and previous is not None and not previous.gone:
                    self.state.add_product(
                        ProductRecord(url, self.state.generation, rank, gone=True)
                    )
                    self.counts["gone"] += 1
                    self.dirty = True
                    self._fail(url, f"{exc}: removed from the catalogue")
                else:
                    self._fail(url, str(exc))
            finally:
                self.products_done += 1
                self.notify("products", self.products_done, len(self.scheduled))

    async def _product(
        self, url: str, rank: tuple[int, ...], page: Page | None, data: ProductData | None
    ) -> None:
        state, opts = self.state, self.options
        if state.product_done(url):
            self.counts["resumed"] += 1
            return
        previous = state.product(url)
        known = previous if previous is not None and previous.item and not previous.gone else None
        if page is None:
            if opts.render == "browser" or (opts.render == "auto" and known and known.rendered):
                page = await self._render(url, listing=False)
            else:
                validators = (
                    Validators(known.etag, known.last_modified)
                    if known and (known.etag or known.last_modified)
                    else None
                )
                page = await self.static.fetch(url, validators=validators)
        if known is not None and self._unchanged(known, page):
            state.add_product(
                dataclasses.replace(
                    known,
                    gen=state.generation,
                    rank=rank,
                    etag=page.etag or known.etag,
                    last_modified=page.last_modified or known.last_modified,
                )
            )
            self.counts["unchanged"] += 1
            return
        if page.not_modified:  # 304, but files of the item went missing: fetch it whole
            page = await self.static.fetch(url)
        if data is None:
            data = product_of(page.html, page.url, page.layout, opts.selectors)
        if (data is None or not data.images) and opts.render == "auto" and not page.rendered:
            page = await self._render(url, listing=False)
            data = product_of(page.html, page.url, page.layout, opts.selectors)
        if data is None:
            raise FetchError("no product found on the page")
        if not data.images:
            raise FetchError("no product images found on the page")
        item_id = data.id or derive_id(data.url)
        wanted = data.images[: opts.max_images]
        saved = await asyncio.gather(*(self._image(u, item_id, url) for u in wanted))
        paths = list(dict.fromkeys(r.path for r in saved if r is not None))
        if not paths:
            raise FetchError(f"none of the {len(wanted)} product images could be used")
        shown = ("title", "price", "currency", "colour", "category", "description", "url")
        item: dict[str, Any] = {"id": item_id, "images": paths}
        item |= {name: getattr(data, name) for name in shown}
        if data.brand:
            item["brand"] = data.brand
        state.add_product(
            ProductRecord(
                url,
                state.generation,
                rank,
                item,
                etag=page.etag,
                last_modified=page.last_modified,
                body_sha256=page.body_sha256,
                rendered=page.rendered,
            )
        )
        if known is None:
            self.counts["new"] += 1
        else:  # a page whose bytes changed (tokens, ads ...) may still show the same item
            self.counts["unchanged" if known.item == item else "updated"] += 1
        self.dirty = True

    def _unchanged(self, known: ProductRecord, page: Page) -> bool:
        same = page.not_modified or (
            page.body_sha256 is not None and page.body_sha256 == known.body_sha256
        )
        return same and all((self.root / p).is_file() for p in known.item.get("images", []))

    async def _image(self, url: str, item_id: str, page_url: str) -> ImageRecord | None:
        try:
            saved = await self.images.save(url, item_id)
        except FetchError as exc:
            self._fail(url, f"image of {page_url}: {exc}")
            return None
        except OSError as exc:
            raise CrawlError(f"cannot write images to {self.root}: {exc}") from None
        self.counts["downloaded" if saved.downloaded else "reused"] += 1
        self.notify("images", self.counts["downloaded"] + self.counts["reused"], 0)
        return saved.record


def crawl(
    urls: Iterable[str],
    out_dir: Path,
    options: CrawlOptions | None = None,
    *,
    progress: Progress | None = None,
) -> CrawlSummary:
    """Crawl `urls` into `out_dir` (see the module docstring); blocking, runs its own event loop.

    Raises CrawlError when the crawl cannot run at all (SHOP/ not writable or locked by another
    crawl, no URL, `render="browser"` without Chromium). KeyboardInterrupt stops it after the
    catalogue of what is finished has been written; rerunning resumes.
    """
    return asyncio.run(crawl_async(urls, out_dir, options, progress=progress))


async def crawl_async(
    urls: Iterable[str],
    out_dir: Path,
    options: CrawlOptions | None = None,
    *,
    progress: Progress | None = None,
) -> CrawlSummary:
    """`crawl` for callers that already run an event loop."""
    seeds = list(dict.fromkeys(urls))
    if not seeds:
        raise CrawlError("no URL to crawl")
    return await Crawler(seeds, Path(out_dir), options or CrawlOptions(), progress).run()
