"""`lookalike crawl --explain URL`: what the crawler takes from one page, and from where.

The page is fetched as a crawl would fetch it (same client, robots.txt, safety rules; rendered in
Chromium when `render` says so, or in `auto` when the static HTML has no product images), nothing
is written. Each field says its source: `json-ld`, `microdata`, `opengraph`, `selectors` (the
presets or `--selectors`), or `generic` with the element it was read from; on a rendered page
every image candidate is listed, kept or refused with the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from lookalike.catalog.crawl.browser import BrowserFetcher
from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.extract import FIELDS, extract_product, product_layers
from lookalike.catalog.crawl.fetch import Page, StaticFetcher
from lookalike.catalog.crawl.generic import ImageVerdict, page_kind, product_of, read_product
from lookalike.catalog.crawl.options import CrawlOptions, derive_id
from lookalike.catalog.crawl.safety import check_url

_LAYERS = ("json-ld", "microdata", "opengraph", "selectors")


@dataclass(frozen=True)
class FieldSource:
    """One field of the item: its value (None: empty) and where it came from."""

    name: str
    value: str | float | None
    source: str


@dataclass(frozen=True)
class Explanation:
    """What `--explain` prints (see the module docstring)."""

    url: str
    rendered: bool
    kind: str
    fields: tuple[FieldSource, ...]
    images: tuple[ImageVerdict, ...]
    listing_links: int

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "rendered": self.rendered,
            "kind": self.kind,
            "fields": {f.name: {"value": f.value, "source": f.source} for f in self.fields},
            "images": [{"url": v.url, "kept": v.kept, "reason": v.reason} for v in self.images],
            "listing_links": self.listing_links,
        }


def explain(url: str, options: CrawlOptions | None = None) -> Explanation:
    """Fetch `url` as a crawl would and explain what it takes from it (blocking)."""
    return asyncio.run(explain_async(url, options or CrawlOptions()))


async def explain_async(url: str, options: CrawlOptions) -> Explanation:
    checked = check_url(url)
    async with PoliteClient(options.politeness, options.safety) as client:
        page: Page
        if options.render == "browser":
            page = await _render(client, options, checked)
        else:
            page = await StaticFetcher(client).fetch(checked)
            data = product_of(page.html, page.url, None, options.selectors)
            if options.render == "auto" and (data is None or not data.images):
                page = await _render(client, options, checked)
    return describe(page, options)


async def _render(client: PoliteClient, options: CrawlOptions, url: str) -> Page:
    browser = BrowserFetcher(client, options.browser)
    try:
        return await browser.fetch(url)
    finally:
        await browser.aclose()


def describe(page: Page, options: CrawlOptions) -> Explanation:
    """The explanation of an already fetched page."""
    sel = options.selectors
    kind, _, listing = page_kind(page, sel)
    base = extract_product(page.html, page.url, sel)
    data = product_of(page.html, page.url, page.layout, sel)
    generic = read_product(page.layout, page.html, page.url) if page.layout else None
    layers = product_layers(page.html, page.url, sel)
    fields: list[FieldSource] = []
    for name in FIELDS:
        value = getattr(data, name) if data is not None else None
        if base is not None and getattr(base, name) not in (None, ""):
            source = next((n for n in _LAYERS if layers[n].get(name) == value), "selectors")
        else:
            choice = getattr(generic, name, None) if generic is not None else None
            source = f"generic: {choice.source}" if choice is not None else "not found"
        fields.append(FieldSource(name, value, source if value not in (None, "") else "not found"))
    if data is not None and not data.id:
        fields[FIELDS.index("id")] = FieldSource(
            "id", derive_id(data.url), "none on the page: made from the URL"
        )
    images: list[ImageVerdict] = []
    if data is not None:
        if generic is not None and "generic" in data.sources and data.images == generic.images:
            images = list(generic.verdicts)
        else:
            for u in data.images:
                # (JSON-LD and microdata images may be upgraded to a larger rendition.)
                found = next((n for n in _LAYERS if u in layers[n].get("images", ())), None)
                images.append(ImageVerdict(u, True, f"from {found or 'structured data'}"))
        kept = 0
        for i, verdict in enumerate(images):
            if verdict.kept:
                kept += 1
                if kept > options.max_images:
                    images[i] = ImageVerdict(verdict.url, False, "over --max-images")
    return Explanation(
        page.url, page.rendered, kind, tuple(fields), tuple(images), len(listing.products)
    )


def render_text(explanation: Explanation) -> list[str]:
    """The explanation as lines of plain text."""
    how = "rendered in Chromium" if explanation.rendered else "static HTML"
    lines = [f"{explanation.url} ({how}): {explanation.kind}"]
    if explanation.listing_links:
        lines.append(
            f"  links to {explanation.listing_links} product pages (followed only if it is a listing)"
        )
    for f in explanation.fields:
        shown = "-" if f.value in (None, "") else repr(f.value)
        if len(shown) > 70:
            shown = shown[:67] + "..."
        lines.append(f"  {f.name:<12} {shown:<40} <- {f.source}")
    kept = sum(v.kept for v in explanation.images)
    lines.append(f"  images       {kept} kept of {len(explanation.images)} candidates")
    for v in explanation.images:
        lines += [f"    {'kept   ' if v.kept else 'refused'} {v.url}", f"            {v.reason}"]
    lines.append(
        "  wrong? name the right elements with --selectors (see docs/crawler.md, 'Selectors')"
    )
    return lines
