"""What a crawl is told and what it reports: `CrawlOptions`, the URL list, `CrawlSummary`; the
item id derived from a product URL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from lookalike.catalog.crawl.browser import BrowserOptions
from lookalike.catalog.crawl.css import Selectors
from lookalike.catalog.crawl.politeness import Politeness
from lookalike.catalog.crawl.safety import SafetyLimits, slug
from lookalike.errors import CrawlError
from lookalike.types import Skipped

Render = Literal["auto", "static", "browser"]
Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): stages `listing pages`, `products`, `images`; total 0 = unknown."""


@dataclass(frozen=True)
class CrawlOptions:
    """Everything a crawl can be told. Defaults are polite and safe (see docs/crawler.md).

    render: `auto` (browser only when the static page has no product images / links),
        `static` (never a browser) or `browser` (every page in Chromium).
    max_pages: listing pages per crawl (pagination included), at most.
    max_products: product pages per crawl, at most.
    max_images: images kept per product, at most (the first ones, in page order).
    min_image_side: images whose shorter side is smaller (icons, swatches) are skipped, in pixels.
    workers: product pages processed at once over all hosts (hosts also have their own limit).
    checkpoint_s: how often SHOP/catalogue.jsonl is rewritten while the crawl runs, in seconds.
    sitemaps: also crawl the product pages of the sitemaps each seed host's robots.txt names
        (else its /sitemap.xml); see `discover`.
    """

    render: Render = "auto"
    max_pages: int = 50
    max_products: int = 1000
    max_images: int = 30
    min_image_side: int = 100
    politeness: Politeness = field(default_factory=Politeness)
    safety: SafetyLimits = field(default_factory=SafetyLimits)
    selectors: Selectors = field(default_factory=Selectors)
    browser: BrowserOptions = field(default_factory=BrowserOptions)
    workers: int = 8
    checkpoint_s: float = 5.0
    sitemaps: bool = False

    def __post_init__(self) -> None:
        if self.render not in ("auto", "static", "browser"):
            raise CrawlError(f"render must be auto, static or browser, not {self.render!r}")
        for name in ("max_pages", "max_products", "max_images", "workers"):
            if getattr(self, name) < 1:
                raise CrawlError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class CrawlSummary:
    """What one crawl run did.

    items: lines in the catalogue now (this run's and earlier runs' items).
    generation, resumed: see `state` (resumed: this run continued an interrupted crawl).
    products_new / products_updated / products_unchanged: product pages visited in this run.
    products_resumed: product pages skipped because an interrupted run had finished them.
    products_gone: items removed because their page now answers 404 or 410.
    requests: HTTP requests sent (robots.txt and browser sub-requests included).
    limit_reached: the crawl hit max_pages or max_products (there may be more to crawl).
    failures: pages and images that could not be used, with the reason.
    """

    catalogue: Path
    items: int
    generation: int
    resumed: bool
    listing_pages: int
    products_new: int
    products_updated: int
    products_unchanged: int
    products_resumed: int
    products_gone: int
    images_downloaded: int
    images_reused: int
    pages_rendered: int
    requests: int
    limit_reached: bool
    failures: tuple[Skipped, ...]
    seconds: float


def read_url_list(path: Path) -> list[str]:
    """The URLs of a URL list: one per line; blank lines and lines starting with `#` skipped.

    Raises CrawlError when the file cannot be read or holds no URL.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CrawlError(f"cannot read the URL list {path}: {exc}") from None
    urls = [line.strip() for line in text.splitlines()]
    urls = [u for u in urls if u and not u.startswith("#")]
    if not urls:
        raise CrawlError(f"{path} holds no URL (one product or listing URL per line)")
    return urls


def derive_id(url: str) -> str:
    """An item id from a product URL: its last path segment and query values as a slug, plus 8
    hex of the URL (`https://shop/p/red-dress.html` -> `red-dress-1a2b3c4d`,
    `.../product.php?id=42` -> `product-42-...`): readable, stable, unique."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    words = [PurePosixPath(unquote(segments[-1])).stem] if segments else []
    words += [value for _, value in parse_qsl(parts.query)]
    return f"{slug(' '.join(words)) or 'item'}-{hashlib.sha1(url.encode('utf-8')).hexdigest()[:8]}"
