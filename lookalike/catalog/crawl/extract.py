"""Products and product links out of HTML: pure functions of (html, page URL), no network.

Where a product's fields come from, first source that has a value wins per field:

1. schema.org `Product` / `ProductGroup` in JSON-LD (`<script type="application/ld+json">`,
   `@graph`, lists and nesting included; among several products the one whose URL is the page's);
2. schema.org `Product` microdata (`itemscope itemtype=".../Product"`, offers nested);
3. OpenGraph and product meta tags (`og:title`, `og:image`, `product:price:amount` ...);
4. the configurable CSS `Selectors` (`h1`, `.price`, gallery images ...).

Images: the structured images (JSON-LD, microdata) when there are any, else OpenGraph images
plus the images the `images` selectors match. Every image is taken at its largest rendition:
for each `<img>` the zoom link around it (`<a href="big.jpg">`) or a zoom attribute
(`data-zoom-image` ...), else the widest `srcset` / `data-srcset` / `<picture><source>` entry,
else a lazy-loading attribute (`data-src` ...), else `src`; a structured image URL that is one
of an element's smaller renditions is replaced by that element's largest. URLs are made
absolute (against `<base href>` too), non-http(s) ones (`data:`, `javascript:`) are dropped, and
duplicates removed in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lookalike.catalog.crawl.css import Selectors, from_selectors
from lookalike.catalog.crawl.listing import ListingData, listing_of
from lookalike.catalog.crawl.page import Doc, canonical_link, renditions
from lookalike.catalog.crawl.structured import from_json_ld, from_microdata, from_opengraph
from lookalike.types import JSONValue


@dataclass(frozen=True)
class ProductData:
    """What a product page says. `url` is the canonical URL, `images` absolute URLs, best first.

    price: a number in the page's currency (`currency`, ISO 4217 when known).
    sources: where the data came from (`json-ld`, `microdata`, `opengraph`, `selectors`).
    """

    url: str
    images: tuple[str, ...] = ()
    id: str | None = None
    title: str | None = None
    price: float | None = None
    currency: str | None = None
    colour: str | None = None
    category: str | None = None
    description: str | None = None
    brand: str | None = None
    sources: tuple[str, ...] = ()

    @property
    def structured(self) -> bool:
        """True when the page declares a product (JSON-LD, microdata or `og:type` product)."""
        return any(s in ("json-ld", "microdata", "opengraph") for s in self.sources)


FIELDS = ("title", "price", "currency", "id", "colour", "category", "description", "brand")
"""The `ProductData` fields every source may give (besides url and images), as `--explain` lists
them."""

PageKind = Literal["product", "listing", "none"]


def classify(
    html: str, url: str, selectors: Selectors | None = None
) -> tuple[PageKind, ProductData | None, ListingData]:
    """What an unknown page is: a product when it declares one (structured data, even without
    images: a browser may find them), else a listing when it links to products, else a product
    when the selectors find images, else none."""
    selectors = selectors or Selectors()
    doc = Doc(html, url)
    product = _product(doc, selectors)
    listing = listing_of(doc, selectors)
    if product is not None and product.structured:
        return "product", product, listing
    if listing.products:
        return "listing", product, listing
    if product is not None and product.images:
        return "product", product, listing
    return "none", product, listing


def extract_product(html: str, url: str, selectors: Selectors | None = None) -> ProductData | None:
    """The product a page shows, or None when it shows neither product data nor a title.

    The result may have no images (the caller decides whether to render the page in a browser).
    """
    return _product(Doc(html, url), selectors or Selectors())


def extract_listing(html: str, url: str, selectors: Selectors | None = None) -> ListingData:
    """Product links and next-page links of a listing page (see `ListingData`)."""
    return listing_of(Doc(html, url), selectors or Selectors())


def product_layers(
    html: str, url: str, selectors: Selectors | None = None
) -> dict[str, dict[str, Any]]:
    """What each source says about the product, by name (`json-ld`, `microdata`, `opengraph`,
    `selectors`), each a dict of field -> value (empty when the source says nothing): what
    `extract_product` merges, for explaining where a field came from."""
    doc = Doc(html, url)
    return {
        "json-ld": from_json_ld(doc),
        "microdata": from_microdata(doc),
        "opengraph": from_opengraph(doc),
        "selectors": from_selectors(doc, selectors or Selectors()),
    }


def marked_renditions(html: str, url: str, mark: str) -> dict[int, list[str]]:
    """For every element of a rendered page carrying the attribute `mark="N"`: N -> its image
    renditions, largest first (an `<img>`: see `renditions`; another element: nothing, its
    CSS background is measured in the browser)."""
    doc = Doc(html, url)
    images = [
        (n.attributes.get(mark) or "", n) for n in doc.tree.css(f"[{mark}]") if n.tag == "img"
    ]
    return {int(value): renditions(doc, node) for value, node in images if value.isdigit()}


def _product(doc: Doc, selectors: Selectors) -> ProductData | None:
    ld, md, og = from_json_ld(doc), from_microdata(doc), from_opengraph(doc)
    css = from_selectors(doc, selectors)
    sources = [
        name
        for name, data in (("json-ld", ld), ("microdata", md), ("opengraph", og))
        if data and (name != "opengraph" or data.get("is_product"))
    ]
    layers = [ld, md, og, css]

    def pick(key: str) -> JSONValue:
        return next((layer[key] for layer in layers if layer.get(key) not in (None, "")), None)

    structured = [doc.upgrade(u) for u in (ld.get("images", []) + md.get("images", []))]
    if structured:
        images = structured
    else:
        images = og.get("images", []) + css.get("images", [])
        if css.get("images"):
            sources.append("selectors")
    images = list(dict.fromkeys(images))
    if not sources and not images:
        return None  # a title alone (every page has one) is not a product
    if "selectors" not in sources and any(
        css.get(k) and not any(layer.get(k) for layer in (ld, md, og))
        for k in ("title", "price", "colour", "category", "description")
    ):
        sources.append("selectors")
    return ProductData(
        url=canonical_link(doc) or pick("url") or doc.url,
        images=tuple(images),
        sources=tuple(sources),
        **{name: pick(name) for name in FIELDS},
    )
