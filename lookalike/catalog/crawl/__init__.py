"""The crawler: a shop's product and listing pages -> SHOP/images/... + SHOP/catalogue.jsonl.

    from lookalike.catalog.crawl import CrawlOptions, crawl
    summary = crawl(["https://shop.example/dresses"], Path("shop"), CrawlOptions(max_products=200))

Modules, one concern each:

    crawler.py     crawl() and crawl_async(); the Crawler: listings -> product links -> items
    options.py     CrawlOptions, CrawlSummary, the URL list, item ids
    fetch.py       the static (httpx) fetcher, and the Page it returns
    browser.py     the browser fetcher (Playwright + the system's Chromium; scrolls lazy pages)
    extract.py     products and listings out of HTML: the sources merged per field
    page.py        the parsed page (base URL, JSON-LD, meta tags) and image renditions
    structured.py  JSON-LD / microdata / OpenGraph product data
    css.py         the configurable CSS `Selectors` and what they find
    listing.py     product links and pagination of listing pages
    values.py      plain text, prices and currencies out of page text
    layout.py      what a rendered page looks like (measured in Chromium: headings, prices, images)
    generic.py     the generic product reader for rendered pages without structured data
    discover.py    sitemaps (and robots.txt Sitemap: lines), "load more" buttons
    explain.py     `--explain URL`: what one page gives, and from where
    client.py      the one HTTP client: safety, robots.txt, rate limits, retries, caps
    politeness.py  robots.txt rules, per-host gates, Retry-After and backoff
    safety.py      URL and address checks, content sniffing, safe file names
    images.py      download, check and save product images under SHOP/images/
    state.py       the resumable journal in SHOP/.crawl/ and the atomic catalogue writer

Imports are lazy, so `import lookalike.catalog.crawl` costs nothing until a crawl runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.errors import CrawlError, FetchError, UnsafeURLError

if TYPE_CHECKING:
    from lookalike.catalog.crawl.browser import BrowserOptions
    from lookalike.catalog.crawl.crawler import crawl, crawl_async
    from lookalike.catalog.crawl.css import Selectors
    from lookalike.catalog.crawl.options import CrawlOptions, CrawlSummary, read_url_list
    from lookalike.catalog.crawl.politeness import Politeness
    from lookalike.catalog.crawl.safety import SafetyLimits

_EXPORTS = {
    "BrowserOptions": "browser",
    "CrawlOptions": "options",
    "CrawlSummary": "options",
    "crawl": "crawler",
    "crawl_async": "crawler",
    "read_url_list": "options",
    "Selectors": "css",
    "Politeness": "politeness",
    "SafetyLimits": "safety",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"lookalike.catalog.crawl.{module}"), name)


__all__ = [
    "BrowserOptions",
    "CrawlError",
    "CrawlOptions",
    "CrawlSummary",
    "FetchError",
    "Politeness",
    "SafetyLimits",
    "Selectors",
    "UnsafeURLError",
    "crawl",
    "crawl_async",
    "read_url_list",
]
