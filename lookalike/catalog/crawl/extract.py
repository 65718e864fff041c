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

import html as html_lib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from lookalike.catalog.crawl.errors import CrawlError, UnsafeURLError
from lookalike.catalog.crawl.safety import check_url

DEFAULT_IMAGE_SELECTORS = (
    "[data-zoom-image]",
    "[data-large-image]",
    ".product-gallery img",
    ".product__media img",
    ".product-media img",
    ".product-images img",
    ".product-image img",
    "img.product-image",
    ".woocommerce-product-gallery img",
    "#product-images img",
    ".gallery img",
    "[data-product-image]",
)
DEFAULT_PRODUCT_LINK_SELECTORS = (
    "[itemtype*='schema.org/Product'] a[href]",
    "a[itemprop=url]",
    ".product-card a[href]",
    ".product-item a[href]",
    ".product-tile a[href]",
    "li.product a[href]",
    ".product a[href]",
    "a.product-link",
    "a[href*='/product/']",
    "a[href*='/products/']",
    "a[href*='/p/']",
    "a[href*='/item/']",
)
DEFAULT_NEXT_SELECTORS = (
    "link[rel~=next]",
    "a[rel~=next]",
    ".pagination .next a",
    ".pagination a.next",
    "li.next a",
    "a.next",
    "a[aria-label='Next']",
    "a[aria-label='Next page']",
)


@dataclass(frozen=True)
class Selectors:
    """CSS selectors tried when structured data says nothing (each field: first match wins).

    Load your own with `Selectors.from_mapping({"images": [".zoom img"], "price": ".amount"})`
    or `Selectors.from_file("selectors.json")`; fields left out keep the defaults.
    """

    images: tuple[str, ...] = DEFAULT_IMAGE_SELECTORS
    title: tuple[str, ...] = ("h1", "[itemprop=name]", ".product-title", ".product-name")
    price: tuple[str, ...] = ("[itemprop=price]", "[data-price]", ".price", ".product-price")
    colour: tuple[str, ...] = (
        "[itemprop=color]",
        "[data-colour]",
        "[data-color]",
        ".colour",
        ".color",
    )
    category: tuple[str, ...] = ("[itemprop=category]", ".product-category")
    description: tuple[str, ...] = (
        "[itemprop=description]",
        ".product-description",
        "#description",
    )
    product_links: tuple[str, ...] = DEFAULT_PRODUCT_LINK_SELECTORS
    next_page: tuple[str, ...] = DEFAULT_NEXT_SELECTORS

    def __post_init__(self) -> None:
        probe = LexborHTMLParser("<p></p>")
        for f in fields(self):
            for selector in getattr(self, f.name):
                try:
                    probe.css(selector)
                except Exception:  # selectolax raises its own error type for bad CSS
                    raise CrawlError(f"invalid CSS selector for {f.name}: {selector!r}") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Selectors:
        """Defaults overridden by `data` (field -> a selector or a list of selectors)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CrawlError(f"unknown selector fields {unknown}; valid: {sorted(known)}")
        values: dict[str, tuple[str, ...]] = {}
        for name, value in data.items():
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
                raise CrawlError(f"selectors.{name} must be a string or a list of strings")
            values[name] = tuple(items)
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path) -> Selectors:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CrawlError(f"cannot read selectors file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise CrawlError(f"{path}: expected a JSON object of field -> selectors")
        return cls.from_mapping(data)


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


@dataclass(frozen=True)
class ListingData:
    """Product links (absolute, same site, in page order) and next-page candidates, best first."""

    products: tuple[str, ...] = ()
    next_pages: tuple[str, ...] = ()


PageKind = Literal["product", "listing", "none"]


def classify(
    html: str, url: str, selectors: Selectors | None = None
) -> tuple[PageKind, ProductData | None, ListingData]:
    """What an unknown page is: a product when it declares one (structured data, even without
    images: a browser may find them), else a listing when it links to products, else a product
    when the selectors find images, else none."""
    selectors = selectors or Selectors()
    doc = _Doc(html, url)
    product = _product(doc, selectors)
    listing = _listing(doc, selectors)
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
    return _product(_Doc(html, url), selectors or Selectors())


def extract_listing(html: str, url: str, selectors: Selectors | None = None) -> ListingData:
    """Product links and next-page links of a listing page (see `ListingData`)."""
    return _listing(_Doc(html, url), selectors or Selectors())


def product_layers(
    html: str, url: str, selectors: Selectors | None = None
) -> dict[str, dict[str, Any]]:
    """What each source says about the product, by name (`json-ld`, `microdata`, `opengraph`,
    `selectors`), each a dict of field -> value (empty when the source says nothing): what
    `extract_product` merges, for explaining where a field came from."""
    doc = _Doc(html, url)
    return {
        "json-ld": _from_json_ld(doc),
        "microdata": _from_microdata(doc),
        "opengraph": _from_opengraph(doc),
        "selectors": _from_selectors(doc, selectors or Selectors()),
    }


def marked_renditions(html: str, url: str, mark: str) -> dict[int, list[str]]:
    """For every element of a rendered page carrying the attribute `mark="N"`: N -> its image
    renditions, largest first (an `<img>`: see `renditions`; another element: nothing, its
    CSS background is measured in the browser)."""
    doc = _Doc(html, url)
    out: dict[int, list[str]] = {}
    for node in doc.tree.css(f"[{mark}]"):
        value = node.attributes.get(mark) or ""
        if value.isdigit() and node.tag == "img":
            out[int(value)] = renditions(doc, node)
    return out


# -- the parsed page ----------------------------------------------------------------------------


class _Doc:
    def __init__(self, html: str, url: str) -> None:
        self.tree = LexborHTMLParser(html)
        self.url = url
        base = self.tree.css_first("base[href]")
        self.base = (self.abs(base.attributes.get("href")) if base else None) or url
        self._json_ld: list[Any] | None = None
        self._meta: dict[str, list[str]] | None = None
        self._best: dict[str, str] | None = None

    def abs(self, ref: object) -> str | None:
        """`ref` as an absolute, checked http(s) URL, or None."""
        if not isinstance(ref, str) or not ref.strip():
            return None
        text = ref.strip()
        if text.startswith(("data:", "blob:", "javascript:", "mailto:", "tel:", "#")):
            return None
        try:
            return check_url(urljoin(getattr(self, "base", self.url), text))
        except (UnsafeURLError, ValueError):
            return None

    @property
    def json_ld(self) -> list[Any]:
        if self._json_ld is None:
            self._json_ld = []
            for node in self.tree.css("script"):
                kind = (node.attributes.get("type") or "").split(";", 1)[0].strip().lower()
                if kind != "application/ld+json":
                    continue
                text = (node.text(deep=True, strip=False) or "").strip()
                text = re.sub(r"^\s*(?://\s*)?<!\[CDATA\[|(?://\s*)?\]\]>\s*$", "", text)
                try:
                    self._json_ld.append(json.loads(text, strict=False))
                except ValueError:
                    continue  # a broken block must not hide the others
        return self._json_ld

    @property
    def meta(self) -> dict[str, list[str]]:
        if self._meta is None:
            self._meta = {}
            for node in self.tree.css("meta[content]"):
                a = node.attributes
                key = (a.get("property") or a.get("name") or a.get("itemprop") or "").strip()
                if key and (a.get("content") or "").strip():
                    self._meta.setdefault(key.lower(), []).append(a["content"].strip())
        return self._meta

    @property
    def best_rendition(self) -> dict[str, str]:
        """Every rendition URL of every `<img>` -> the largest rendition of that image."""
        if self._best is None:
            self._best = {}
            for node in self.tree.css("img"):
                candidates = renditions(self, node)
                for candidate in candidates:
                    self._best.setdefault(candidate, candidates[0])
        return self._best

    def upgrade(self, url: str) -> str:
        return self.best_rendition.get(url, url)


# -- renditions --------------------------------------------------------------------------------

_ZOOM_ATTRS = (
    "data-zoom-image",
    "data-zoom",
    "data-zoom-src",
    "data-large-image",
    "data-large_image",
    "data-large",
    "data-full",
    "data-full-src",
    "data-fullsize",
    "data-hires",
)
_LAZY_ATTRS = (
    "data-src",
    "data-lazy-src",
    "data-lazy",
    "data-original",
    "data-echo",
    "data-img",
    "data-image",
)
_SRCSET_ATTRS = ("srcset", "data-srcset", "data-lazy-srcset")
_IMAGE_PATH = re.compile(r"\.(?:jpe?g|png|webp|avif|gif|bmp|tiff?|heic|heif)$", re.IGNORECASE)


def parse_srcset(value: str) -> list[tuple[str, float | None, float | None]]:
    """`srcset` -> [(url, width in w or None, density in x or None)], following the HTML
    parsing rules closely enough for real pages (URLs may hold commas, e.g. `w_300,h_200`)."""
    out: list[tuple[str, float | None, float | None]] = []
    pos, n = 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        if not url:
            break
        descriptors = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth, start = 0, pos
            while pos < n and (value[pos] != "," or depth):
                depth += {"(": 1, ")": -1}.get(value[pos], 0)
                pos += 1
            descriptors = value[start:pos]
        width = density = None
        for token in descriptors.split():
            try:
                if token.endswith("w"):
                    width = float(token[:-1])
                elif token.endswith("x"):
                    density = float(token[:-1])
            except ValueError:
                continue
        out.append((url, width, density))
    return out


def renditions(doc: _Doc, node: LexborNode) -> list[str]:
    """Absolute URLs of one image element's renditions, largest first (see the module docstring)."""
    zoom: list[str | None] = []
    ancestor: LexborNode | None = node
    for _ in range(4):  # the element and a few wrappers: zoom links and attributes sit there
        if ancestor is None:
            break
        attrs = ancestor.attributes
        zoom.extend(attrs.get(a) for a in _ZOOM_ATTRS)
        if ancestor.tag == "a" and _IMAGE_PATH.search(urlsplit(attrs.get("href") or "").path):
            zoom.append(attrs.get("href"))
        ancestor = ancestor.parent
    sets: list[tuple[str, float | None, float | None]] = []
    sources = [node]
    parent = node.parent
    if parent is not None and parent.tag == "picture":
        sources = [s for s in parent.css("source") if _raster_source(s)] + sources
    for source in sources:
        for attr in _SRCSET_ATTRS:
            if source.attributes.get(attr):
                sets.extend(parse_srcset(source.attributes[attr] or ""))
    if any(w is not None for _, w, _ in sets):
        sets.sort(key=lambda c: c[1] or 0.0, reverse=True)
    else:
        sets.sort(key=lambda c: c[2] or 1.0, reverse=True)
    lazy = [node.attributes.get(a) for a in _LAZY_ATTRS]
    ordered = [*zoom, *(url for url, _, _ in sets), *lazy, node.attributes.get("src")]
    return list(dict.fromkeys(u for u in (doc.abs(r) for r in ordered) if u))


def _raster_source(node: LexborNode) -> bool:
    return "svg" not in (node.attributes.get("type") or "")


def _node_images(doc: _Doc, node: LexborNode) -> list[str]:
    """The largest rendition of an `<img>`, or of the images inside / linked by another node."""
    if node.tag == "img":
        found = renditions(doc, node)
        return found[:1]
    attrs = node.attributes
    for attr in (*_ZOOM_ATTRS, "href", "content", "src", *_LAZY_ATTRS):
        url = doc.abs(attrs.get(attr))
        if url and (attr != "href" or _IMAGE_PATH.search(urlsplit(url).path)):
            return [url]
    return [r[0] for r in (renditions(doc, img) for img in node.css("img")) if r]


# -- values ------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def clean_text(value: object, max_len: int = 5000) -> str | None:
    """A JSON-LD / meta / element value as one line of plain text (tags and entities resolved)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return clean_text(value.get("name") or value.get("@value"), max_len)
    if isinstance(value, list):
        for v in value:
            text = clean_text(v, max_len)
            if text:
                return text
        return None
    text = str(value)
    if "<" in text and ">" in text:
        text = LexborHTMLParser(text).text(separator=" ") or ""
    text = _SPACES.sub(" ", html_lib.unescape(text)).strip()
    return text[:max_len] or None


_CURRENCY_SYMBOLS = (
    ("US$", "USD"),
    ("A$", "AUD"),
    ("C$", "CAD"),
    ("€", "EUR"),
    ("£", "GBP"),
    ("¥", "JPY"),
    ("₹", "INR"),
    ("₩", "KRW"),
    ("₺", "TRY"),
    ("zł", "PLN"),
    ("$", "USD"),
)
_CURRENCY_CODES = frozenset(
    [
        "EUR",
        "USD",
        "GBP",
        "CHF",
        "JPY",
        "CNY",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "RON",
        "AUD",
        "CAD",
        "NZD",
        "INR",
        "BRL",
        "MXN",
        "ZAR",
        "KRW",
        "TRY",
        "HKD",
        "SGD",
        "ILS",
        "AED",
        "SAR",
        "THB",
        "IDR",
        "MYR",
        "PHP",
    ]
)
_NUMBER = re.compile(r"\d[\d.,'\s\u00a0\u202f]*")


def currency_codes() -> frozenset[str]:
    """The ISO 4217 codes a price text is recognised by."""
    return _CURRENCY_CODES


def parse_price(value: object) -> float | None:
    """A price as a number: 49.9, "49,90 €", "$1,299.00", "1.299,00", "1 299" ...; else None.

    With both `,` and `.`, the last one is the decimal mark; with one of them, it is a decimal
    mark unless it is repeated or followed by exactly three digits (a thousands separator).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, dict):
        return parse_price(value.get("price") or value.get("@value"))
    match = _NUMBER.search(str(value))
    if not match:
        return None
    token = re.sub(r"['\s\u00a0\u202f]", "", match.group()).rstrip(".,")
    if "," in token and "." in token:
        decimal = "," if token.rfind(",") > token.rfind(".") else "."
        other = "." if decimal == "," else ","
        token = token.replace(other, "").replace(decimal, ".")
    elif "," in token or "." in token:
        mark = "," if "," in token else "."
        head, _, tail = token.rpartition(mark)
        thousands = token.count(mark) > 1 or (len(tail) == 3 and head not in ("", "0"))
        token = token.replace(mark, "") if thousands else token.replace(mark, ".")
    try:
        number = float(token)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_currency(value: object) -> str | None:
    """An ISO 4217 code from a code (`eur`) or a symbol in a price text (`49,90 €`)."""
    text = clean_text(value, 200)
    if not text:
        return None
    for code in re.findall(r"[A-Za-z]{3}", text):
        if code.upper() in _CURRENCY_CODES:
            return code.upper()
    for symbol, code in _CURRENCY_SYMBOLS:
        if symbol in text:
            return code
    return None


# -- structured data -----------------------------------------------------------------------------

_PRODUCT_TYPES = frozenset({"Product", "ProductGroup", "IndividualProduct", "ProductModel"})
_ID_KEYS = (
    "sku",
    "productID",
    "mpn",
    "gtin13",
    "gtin14",
    "gtin12",
    "gtin8",
    "gtin",
    "productGroupID",
)


def _walk(obj: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 32:
        return
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from _walk(value, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value, depth + 1)


def _types(obj: Mapping[str, Any]) -> set[str]:
    raw = obj.get("@type")
    names = raw if isinstance(raw, list) else [raw]
    return {str(n).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] for n in names if n}


def _same_page(a: str | None, b: str) -> bool:
    if not a:
        return False
    return a.split("#", 1)[0].rstrip("/") == b.split("#", 1)[0].rstrip("/")


def _ld_products(doc: _Doc) -> list[dict[str, Any]]:
    return [o for block in doc.json_ld for o in _walk(block) if _types(o) & _PRODUCT_TYPES]


def _ld_image_refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        ref = value.get("contentUrl") or value.get("url") or value.get("@id")
        return [ref] if isinstance(ref, str) else []
    if isinstance(value, list):
        return [r for v in value for r in _ld_image_refs(v)]
    return []


def _ld_offer(offers: Any) -> tuple[Any, Any]:
    """(price, currency) of the first offer that has a price."""
    for offer in offers if isinstance(offers, list) else [offers]:
        if not isinstance(offer, dict):
            continue
        spec = offer.get("priceSpecification")
        spec = spec[0] if isinstance(spec, list) and spec else spec
        spec = spec if isinstance(spec, dict) else {}
        price = next(
            (
                p
                for p in (offer.get("price"), offer.get("lowPrice"), spec.get("price"))
                if p not in (None, "")
            ),
            None,
        )
        if price is not None:
            return price, offer.get("priceCurrency") or spec.get("priceCurrency")
    return None, None


def _from_json_ld(doc: _Doc) -> dict[str, Any]:
    products = _ld_products(doc)
    if not products:
        return {}
    canonical = _canonical_link(doc)
    main = next(
        (p for p in products if _same_page(doc.abs(p.get("url")), doc.url)),
        next(
            (p for p in products if canonical and _same_page(doc.abs(p.get("url")), canonical)),
            products[0],
        ),
    )
    variants = main.get("hasVariant")
    variants = (
        variants if isinstance(variants, list) else [variants] if isinstance(variants, dict) else []
    )
    images = _ld_image_refs(main.get("image"))
    for variant in variants:
        if isinstance(variant, dict):
            images += _ld_image_refs(variant.get("image"))
    price, currency = _ld_offer(main.get("offers"))
    if price is None:
        for variant in variants:
            if isinstance(variant, dict):
                price, currency = _ld_offer(variant.get("offers"))
                if price is not None:
                    break
    return {
        "id": next((clean_text(main[k], 200) for k in _ID_KEYS if clean_text(main.get(k))), None),
        "title": clean_text(main.get("name"), 500),
        "description": clean_text(main.get("description")),
        "colour": _joined(main.get("color")),
        "category": _category(main.get("category")) or _breadcrumb_category(doc),
        "brand": clean_text(main.get("brand"), 200),
        "price": parse_price(price),
        "currency": parse_currency(currency) if currency else parse_currency(price),
        "url": doc.abs(main.get("url")),
        "images": [u for u in (doc.abs(r) for r in images) if u],
    }


def _joined(value: Any) -> str | None:
    if isinstance(value, list):
        parts = [t for t in (clean_text(v, 100) for v in value) if t]
        return ", ".join(dict.fromkeys(parts)) or None
    return clean_text(value, 200)


def _category(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    return clean_text(value, 300)


def _breadcrumb_category(doc: _Doc) -> str | None:
    """The crumb before the product in a JSON-LD BreadcrumbList (`Home > Shirts > X` -> Shirts)."""
    for block in doc.json_ld:
        for obj in _walk(block):
            if "BreadcrumbList" not in _types(obj):
                continue
            items = obj.get("itemListElement")
            if not isinstance(items, list):
                continue
            crumbs = sorted(
                (i for i in items if isinstance(i, dict)),
                key=lambda i: parse_price(i.get("position")) or 0.0,
            )
            names = [clean_text(c.get("name") or c.get("item"), 200) for c in crumbs]
            names = [n for n in names if n]
            if len(names) >= 2:
                return names[-2]
    return None


def _microdata_value(doc: _Doc, node: LexborNode) -> str | None:
    attrs = node.attributes
    match node.tag:
        case "meta":
            return attrs.get("content")
        case "img":
            found = renditions(doc, node)
            return found[0] if found else None
        case "audio" | "embed" | "iframe" | "source" | "track" | "video":
            return attrs.get("src")
        case "a" | "area" | "link":
            return attrs.get("href")
        case "object":
            return attrs.get("data")
        case "data" | "meter":
            return attrs.get("value")
        case "time":
            return attrs.get("datetime") or node.text()
    return attrs.get("content") or node.text(separator=" ")


def _scope_of(node: LexborNode) -> LexborNode | None:
    parent = node.parent
    while parent is not None and "itemscope" not in parent.attributes:
        parent = parent.parent
    return parent


def _microdata_props(scope: LexborNode) -> dict[str, list[LexborNode]]:
    props: dict[str, list[LexborNode]] = {}
    for node in scope.css("[itemprop]"):
        if _scope_of(node) == scope:
            for name in (node.attributes.get("itemprop") or "").split():
                props.setdefault(name, []).append(node)
    return props


def _from_microdata(doc: _Doc) -> dict[str, Any]:
    scopes = [
        n
        for n in doc.tree.css("[itemscope][itemtype]")
        if re.search(
            r"schema\.org/(Product|ProductGroup|IndividualProduct)\b",
            n.attributes.get("itemtype") or "",
        )
    ]
    if not scopes:
        return {}
    scope = scopes[0]
    props = _microdata_props(scope)

    def first(name: str, within: Mapping[str, list[LexborNode]] = props) -> str | None:
        for node in within.get(name, []):
            if "itemscope" in node.attributes and name in ("brand", "offers"):
                inner = _microdata_props(node)
                return first("name", inner) if name == "brand" else None
            text = clean_text(_microdata_value(doc, node), 5000)
            if text:
                return text
        return None

    price = currency = None
    for offer in props.get("offers", []):
        inner = _microdata_props(offer) if "itemscope" in offer.attributes else {}
        price = first("price", inner) or first("lowPrice", inner)
        currency = first("priceCurrency", inner)
        if price:
            break
    price = price or first("price")
    currency = currency or first("priceCurrency")
    images = [
        u for node in props.get("image", []) for u in [doc.abs(_microdata_value(doc, node))] if u
    ]
    return {
        "id": next((first(k) for k in _ID_KEYS if first(k)), None),
        "title": first("name"),
        "description": first("description"),
        "colour": first("color"),
        "category": first("category"),
        "brand": first("brand"),
        "price": parse_price(price),
        "currency": parse_currency(currency) if currency else parse_currency(price),
        "url": doc.abs(first("url")),
        "images": images,
    }


def _from_opengraph(doc: _Doc) -> dict[str, Any]:
    m = doc.meta

    def first(*keys: str) -> str | None:
        for key in keys:
            for value in m.get(key, []):
                text = clean_text(value)
                if text:
                    return text
        return None

    images = [
        u
        for key in ("og:image", "og:image:url", "og:image:secure_url")
        for u in (doc.abs(v) for v in m.get(key, []))
        if u
    ]
    og_type = (first("og:type") or "").lower()
    price = first("product:price:amount", "og:price:amount", "product:sale_price:amount")
    return {
        "is_product": og_type.startswith("product") or price is not None,
        "id": first("product:retailer_item_id", "product:sku"),
        "title": first("og:title", "twitter:title"),
        "description": first("og:description", "description", "twitter:description"),
        "colour": first("product:color"),
        "category": first("product:category"),
        "brand": first("product:brand", "og:brand"),
        "price": parse_price(price),
        "currency": parse_currency(
            first("product:price:currency", "og:price:currency", "product:sale_price:currency")
        ),
        "url": doc.abs(first("og:url")),
        "images": images,
    }


def _from_selectors(doc: _Doc, selectors: Selectors) -> dict[str, Any]:
    def first(
        sel: tuple[str, ...], *, attrs: tuple[str, ...] = ("content",), drop: str = ""
    ) -> str | None:
        if not sel:
            return None
        for node in doc.tree.css(", ".join(sel)):
            for attr in attrs:
                text = clean_text(node.attributes.get(attr))
                if text:
                    return text
            text = node.text(separator=" ")
            for gone in node.css(drop) if drop else ():
                text = text.replace(gone.text(separator=" "), " ", 1)
            text = clean_text(text)
            if text:
                return text
        return None

    # A struck-through old price (`<del>22.00</del> <ins>18.00</ins>`) is not the price.
    price_text = first(
        selectors.price, attrs=("content", "data-price", "value"), drop="del, s, strike"
    )
    images: list[str] = []
    if selectors.images:
        for node in doc.tree.css(", ".join(selectors.images)):
            images += _node_images(doc, node)
    title_node = doc.tree.css_first("title")
    title = first(selectors.title) or (clean_text(title_node.text()) if title_node else None)
    currency_node = doc.tree.css_first("[itemprop=priceCurrency]")
    return {
        "title": title,
        "price": parse_price(price_text),
        "currency": parse_currency(
            (currency_node.attributes.get("content") or currency_node.text())
            if currency_node
            else price_text
        ),
        "colour": first(selectors.colour, attrs=("content", "data-colour", "data-color")),
        "category": first(selectors.category),
        "description": first(selectors.description),
        "images": images,
    }


def _canonical_link(doc: _Doc) -> str | None:
    node = doc.tree.css_first("link[rel~=canonical][href]")
    return doc.abs(node.attributes.get("href")) if node else None


def _product(doc: _Doc, selectors: Selectors) -> ProductData | None:
    ld, md, og = _from_json_ld(doc), _from_microdata(doc), _from_opengraph(doc)
    css = _from_selectors(doc, selectors)
    sources = [
        name
        for name, data in (("json-ld", ld), ("microdata", md), ("opengraph", og))
        if data and (name != "opengraph" or data.get("is_product"))
    ]
    layers = [ld, md, og, css]

    def pick(key: str) -> Any:
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
    url = _canonical_link(doc) or pick("url") or doc.url
    return ProductData(
        url=url,
        images=tuple(images),
        id=pick("id"),
        title=pick("title"),
        price=pick("price"),
        currency=pick("currency"),
        colour=pick("colour"),
        category=pick("category"),
        description=pick("description"),
        brand=pick("brand"),
        sources=tuple(sources),
    )


# -- listings ----------------------------------------------------------------------------------

_PAGE_PARAMS = ("page", "p", "pg", "paged", "pagenumber", "page_number")
_PATH_PAGE = re.compile(r"/page/(\d+)/?$")


def page_number(url: str) -> tuple[str, int] | None:
    """(`page` parameter name or `/page/`, number) of a paginated URL, else None."""
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in _PAGE_PARAMS and value.isdigit():
            return key, int(value)
    found = _PATH_PAGE.search(parts.path)
    return ("/page/", int(found.group(1))) if found else None


def with_page(url: str, param: str, number: int) -> str:
    """`url` pointing at page `number` (same parameter style)."""
    parts = urlsplit(url)
    if param == "/page/":
        path = _PATH_PAGE.sub(f"/page/{number}/", parts.path)
        return urlunsplit(parts._replace(path=path))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param]
    query.append((param, str(number)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def guess_next_page(url: str) -> str | None:
    """The URL of the next page when `url` has a page number (`?page=3` -> `?page=4`)."""
    found = page_number(url)
    return with_page(url, found[0], found[1] + 1) if found else None


def _without_page(url: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(url)
    query = tuple(
        sorted(
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() not in _PAGE_PARAMS
        )
    )
    return parts.netloc, _PATH_PAGE.sub("/", parts.path).rstrip("/") or "/", query


def _same_site(a: str, b: str) -> bool:
    ha, hb = urlsplit(a).hostname or "", urlsplit(b).hostname or ""
    return ha.removeprefix("www.") == hb.removeprefix("www.")


def _listing(doc: _Doc, selectors: Selectors) -> ListingData:
    found: list[str] = []
    for block in doc.json_ld:
        for obj in _walk(block):
            if "ItemList" in _types(obj):
                for element in obj.get("itemListElement") or []:
                    if isinstance(element, dict):
                        item = element.get("item")
                        ref = element.get("url") or (
                            item.get("url") or item.get("@id") if isinstance(item, dict) else item
                        )
                        found.append(doc.abs(ref) or "")
    ld_products = _ld_products(doc)
    if len(ld_products) > 1:  # one Product per card: a listing that declares its products
        found += [doc.abs(p.get("url")) or "" for p in ld_products]
    if selectors.product_links:
        for node in doc.tree.css(", ".join(selectors.product_links)):
            link = node if node.tag in ("a", "area") else node.css_first("a[href]")
            if link is not None:
                found.append(doc.abs(link.attributes.get("href")) or "")

    next_pages: list[str] = []
    if selectors.next_page:
        for node in doc.tree.css(", ".join(selectors.next_page)):
            url = doc.abs(node.attributes.get("href"))
            if url and url != doc.url:
                next_pages.append(url)
    here = page_number(doc.url)
    current = here[1] if here else 1
    same_listing = _without_page(doc.url)
    for anchor in doc.tree.css("a[href]"):
        url = doc.abs(anchor.attributes.get("href"))
        number = page_number(url) if url else None
        if url and number and number[1] == current + 1 and _without_page(url) == same_listing:
            next_pages.append(url)
    next_pages = list(dict.fromkeys(next_pages))

    pagination = set(next_pages) | {doc.url}
    products = [
        u
        for u in dict.fromkeys(found)
        if u
        and u not in pagination
        and _same_site(u, doc.url)
        and not _IMAGE_PATH.search(urlsplit(u).path)
        and not (page_number(u) and _without_page(u) == same_listing)
    ]
    return ListingData(tuple(products), tuple(next_pages))
