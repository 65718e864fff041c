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
from collections.abc import Iterable
from pathlib import Path

from lookalike.catalog.crawl.errors import CrawlError
from lookalike.catalog.crawl.options import CrawlOptions, CrawlSummary, Progress
from lookalike.catalog.crawl.orchestrator import Crawler


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
