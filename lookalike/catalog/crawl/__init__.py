"""The crawler: a shop's product and listing pages -> SHOP/images/... + SHOP/catalogue.jsonl.

    from lookalike.catalog.crawl import CrawlOptions, crawl
    summary = crawl(["https://shop.example/dresses"], Path("shop"), CrawlOptions(max_products=200))

Modules, one concern each:

    crawler.py     the orchestrator: listings -> product links -> items; limits; summary
    fetch.py       the Fetcher protocol and the static (httpx) fetcher
    browser.py     the browser fetcher (Playwright + the system's Chromium; scrolls lazy pages)
    extract.py     JSON-LD / microdata / OpenGraph / CSS selectors -> products and links
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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.catalog.crawl.browser import BrowserOptions
    from lookalike.catalog.crawl.crawler import (
        CrawlOptions,
        CrawlSummary,
        crawl,
        crawl_async,
        read_url_list,
    )
    from lookalike.catalog.crawl.errors import CrawlError, FetchError, UnsafeURLError
    from lookalike.catalog.crawl.extract import Selectors
    from lookalike.catalog.crawl.politeness import Politeness
    from lookalike.catalog.crawl.safety import SafetyLimits

_EXPORTS = {
    "BrowserOptions": "browser",
    "CrawlOptions": "crawler",
    "CrawlSummary": "crawler",
    "crawl": "crawler",
    "crawl_async": "crawler",
    "read_url_list": "crawler",
    "CrawlError": "errors",
    "FetchError": "errors",
    "UnsafeURLError": "errors",
    "Selectors": "extract",
    "Politeness": "politeness",
    "SafetyLimits": "safety",
}


def __getattr__(name: str) -> Any:
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
