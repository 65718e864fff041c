"""The generic product reader: a rendered page with no structured data and no gallery class names.

Used when JSON-LD, microdata, OpenGraph and the selector presets leave a field empty, on pages
rendered in Chromium (the decisions need the layout `layout.MEASURE_JS` measured there):

- title: the visible `<h1>` with the largest font, else `og:title`, else the document title up to
  its first ` | ` / ` - ` (the shop's name usually follows).
- price: among the visible elements whose short text is a number with a currency symbol or code,
  the one nearest the title (struck-through old prices, prices in the header, footer, navigation
  or a "you may also like" strip left out; a tie goes to the larger font), within one and a half
  screens of it. `from` / `ab` / `à partir de` prices are taken as the lowest price.
- gallery: every `<img>` and CSS background in page order, refused with a reason when it is not
  displayed, sits in the page's header, footer, navigation or an aside, in a section whose heading
  or class names recommendations ("you may also like", "related", ...), in a link to another page
  (a product card), is called a logo / icon / badge / banner, is banner-shaped (more than 3.2
  times wider than high, or higher than wide), is smaller than `min_rendered` CSS pixels on
  screen (a small thumbnail is kept when it has a larger rendition or many pixels and sits with
  the kept ones, or when no image is shown larger),
  has fewer than `min_natural` pixels, or lies outside the section the title and the largest
  images share. A hidden image (`display: none`) is kept when it sits next to a shown photo
  (a carousel's other slides). Each kept one is taken at its largest rendition (zoom link, widest `srcset`, lazy
  attribute, then what is shown), duplicates removed.

`read_product` returns the values and, for `--explain`, why each was chosen or refused.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lookalike.catalog.crawl.css import Selectors
from lookalike.catalog.crawl.extract import (
    ProductData,
    classify,
    extract_product,
    marked_renditions,
)
from lookalike.catalog.crawl.fetch import Page
from lookalike.catalog.crawl.layout import MARK, Ancestor, Box, Layout, MeasuredImage, MeasuredPrice
from lookalike.catalog.crawl.listing import ListingData
from lookalike.catalog.crawl.safety import checked_or_none
from lookalike.catalog.crawl.values import clean_text, parse_currency, parse_price

MIN_RENDERED = 150
"""Shorter side, in CSS pixels, an image must be shown at to count as a product photo."""
MIN_THUMBNAIL = 40
MIN_NATURAL = 100

_RELATED = re.compile(
    r"you may also like|you might also|also like|related|recommend|similar|also bought|"
    r"also viewed|customers also|complete the look|upsell|up-sell|cross-?sell|recently viewed|"
    r"more from|frequently bought|others also|inspiration|könnte .* gefallen|ähnliche|"
    r"vous aimerez|produits similaires|te puede interesar|potrebbe piacerti|anderen kunden",
    re.IGNORECASE,
)
_NOT_PHOTO = frozenset(
    {
        *("logo", "logos", "icon", "icons", "sprite", "badge", "badges", "flag", "flags"),
        *("avatar", "payment", "payments", "banner", "banners", "placeholder", "spinner"),
        *("rating", "stars", "star", "swatch", "swatches", "social"),
    }
)
_OUTSIDE_TAGS = frozenset({"header", "footer", "nav", "aside"})
_FROM = re.compile(
    r"^\s*(from|ab|à partir de|a partir de|desde|vanaf|da|fra|från|od|starting at)\b",
    re.IGNORECASE,
)
_TITLE_TAIL = re.compile(r"\s+[|\-\u2013\u2014\u00b7:]\s+.*$")


@dataclass(frozen=True)
class Choice:
    """A field's value and where it came from, in words."""

    value: str | float | None
    source: str


@dataclass(frozen=True)
class ImageVerdict:
    """One image candidate: the URL it would be saved from, and why it was kept or refused."""

    url: str
    kept: bool
    reason: str


@dataclass(frozen=True)
class GenericProduct:
    """What `read_product` found. `prices` counts the prices shown in the main content (a
    product page shows one or two, a listing one per product)."""

    title: Choice | None
    price: Choice | None
    currency: Choice | None
    images: tuple[str, ...]
    verdicts: tuple[ImageVerdict, ...]
    prices: int = 0

    @property
    def confident(self) -> bool:
        """A title from a heading, a price, photos, and few prices: a product page, even when
        it links to other products (a "you may also like" strip)."""
        return (
            self.title is not None
            and self.title.source.startswith("<h1>")
            and self.price is not None
            and bool(self.images)
            and self.prices <= 3
        )


def read_product(
    layout: Layout,
    html: str,
    url: str,
    *,
    min_rendered: int = MIN_RENDERED,
    min_natural: int = MIN_NATURAL,
) -> GenericProduct:
    """What the rendered page shows as its product (see the module docstring)."""
    title = _title(layout)
    price, currency = _price(layout)
    images, verdicts = _gallery(layout, html, url, min_rendered, min_natural)
    shown = sum(
        1 for p in layout.prices if not p.struck and not _outside(p.chain) and not _related(p.chain)
    )
    return GenericProduct(title, price, currency, images, verdicts, shown)


# -- title and price ---------------------------------------------------------------------------


def _title(layout: Layout) -> Choice | None:
    heading = layout.main_heading
    if heading is not None and clean_text(heading.text):
        return Choice(clean_text(heading.text, 500), f"<h1> {heading.font:.0f}px at {heading.box}")
    if clean_text(layout.og_title):
        return Choice(clean_text(layout.og_title, 500), "og:title")
    text = clean_text(layout.title, 500)
    if text:
        return Choice(_TITLE_TAIL.sub("", text) or text, f"the document title {text!r}")
    return None


def _price(layout: Layout) -> tuple[Choice | None, Choice | None]:
    heading = layout.main_heading
    anchor = heading.box if heading is not None else None
    reach = layout.viewport[1] * 1.5
    best: tuple[tuple[float, float, float], MeasuredPrice] | None = None
    for candidate in layout.prices:
        value = parse_price(candidate.text)
        if candidate.struck or value is None or value <= 0:
            continue
        if _outside(candidate.chain) or _related(candidate.chain):
            continue
        key: tuple[float, float, float]
        if anchor is not None:
            gap = anchor.gap(candidate.box)
            if gap > reach:
                continue
            above = 1.0 if candidate.box.bottom <= anchor.y else 0.0  # prices sit below titles
            key = (above, round(gap / 8), -candidate.font)
        else:
            key = (0.0, candidate.box.y, -candidate.font)
        if best is None or key < best[0]:
            best = (key, candidate)
    if best is None:
        return None, None
    chosen = best[1]
    where = "near the title" if anchor is not None else "first on the page"
    kind = "a 'from' price, " if _FROM.search(chosen.text) else ""
    source = f"{kind}{chosen.text!r} {where}, {chosen.font:.0f}px at {chosen.box}"
    code = parse_currency(chosen.text)
    return (
        Choice(parse_price(chosen.text), source),
        Choice(code, f"in {chosen.text!r}") if code else None,
    )


def _outside(chain: tuple[Ancestor, ...]) -> str | None:
    """The page part (`<header>` ...) an element sits in outside the title's section, or None."""
    for a in chain:
        if a.has_title:
            return None
        if a.tag in _OUTSIDE_TAGS:
            return f"<{a.tag}>"
        if _words(a.hint) & {"navigation", "contentinfo"}:
            return "navigation"
    return None


def _related(chain: tuple[Ancestor, ...]) -> str | None:
    """The heading or class names of a recommendations section the element sits in, or None."""
    for a in chain:
        if a.has_title:
            return None
        for text in (a.heading, a.hint):
            if text and _RELATED.search(text):
                return text
    return None


# -- the gallery -------------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def _not_photo(image: MeasuredImage) -> str | None:
    names = [image.hint, image.alt, urlsplit(image.url).path.rsplit("/", 1)[-1]]
    names += [a.hint for a in image.chain[:2] if not a.has_title]
    for name in names:
        found = _words(name) & _NOT_PHOTO
        if found:
            return sorted(found)[0]
    return None


def _links_away(image: MeasuredImage, page_url: str) -> bool:
    if not image.link or image.link.startswith(("javascript:", "#")):
        return False
    link, page = urlsplit(image.link), urlsplit(page_url)
    if re.search(r"\.(jpe?g|png|webp|avif|gif)$", link.path.lower()):
        return False  # a zoom link
    # Same host and path: another query is the same product (`?variant=2`), not another page.
    return (link.netloc, link.path.rstrip("/")) != (page.netloc, page.path.rstrip("/"))


def _title_depth(image: MeasuredImage) -> int:
    """How deep (from the document root) the nearest ancestor holding the title lies: the deeper,
    the closer the image sits to the title in the page's structure (0: no title on the page)."""
    return next((len(image.chain) - i for i, a in enumerate(image.chain) if a.has_title), 0)


def _gallery(
    layout: Layout, html: str, url: str, min_rendered: int, min_natural: int
) -> tuple[tuple[str, ...], tuple[ImageVerdict, ...]]:
    marked = marked_renditions(html, url, MARK)
    verdicts: dict[int, ImageVerdict] = {}
    large: list[tuple[MeasuredImage, str]] = []
    small: list[tuple[MeasuredImage, str]] = []
    hidden: list[tuple[MeasuredImage, str]] = []

    def refuse(image: MeasuredImage, where: str, why: str) -> None:
        verdicts[image.n] = ImageVerdict(where, False, why)

    for image in layout.images:
        options = [u for u in (marked.get(image.n) or []) if u]
        shown = (
            checked_or_none(image.url) if image.url and not image.url.startswith("data:") else None
        )
        best = options[0] if options else shown
        if best is None:
            refuse(image, image.url[:200] or "(no URL)", "no http(s) URL")
            continue
        box = image.box
        short, long = min(box.w, box.h), max(box.w, box.h)
        nw, nh = image.natural
        if where := _outside(image.chain):
            refuse(image, best, f"in the page's {where}")
        elif strip := _related(image.chain):
            refuse(image, best, f"in a recommendations section ({strip[:60]!r})")
        elif _links_away(image, url):
            refuse(image, best, f"a link to another page ({image.link[:100]})")
        elif word := _not_photo(image):
            refuse(image, best, f"named {word!r} (not a product photo)")
        elif 0 < min(nw, nh) < min_natural:
            refuse(image, best, f"too few pixels ({nw}x{nh})")
        elif not image.visible or short <= 0:
            hidden.append((image, best))  # a carousel's other slides, perhaps: see below
            refuse(image, best, "not displayed")
        elif long > 3.2 * short:
            refuse(image, best, f"banner-shaped ({box.w:.0f}x{box.h:.0f} on the page)")
        elif short >= min_rendered:
            large.append((image, best))
        elif short >= MIN_THUMBNAIL and (best != shown or min(nw, nh) >= 3 * min_rendered):
            small.append((image, best))
        else:
            refuse(image, best, f"too small on the page ({box.w:.0f}x{box.h:.0f})")

    if not large:  # a shop that shows its photos small: the small ones with pixels are all
        large, small = small, []
    # The product's own section: the one shared with the title by the largest images.
    depth = max((_title_depth(i) for i, _ in large), default=0)
    kept: list[tuple[MeasuredImage, str]] = []
    for image, best in large:
        if _title_depth(image) < depth:
            refuse(image, best, "outside the section of the title and the largest images")
        else:
            kept.append((image, best))
    for image, best in small:
        if kept and _title_depth(image) >= depth:
            kept.append((image, best))
        else:
            refuse(image, best, f"a small image ({image.box.w:.0f}x{image.box.h:.0f}) away "
                   "from the gallery")  # fmt: skip
    # Slides a carousel hides (`display: none`) sit next to the one it shows.
    shown_large = [i for i, _ in kept if i.box.w >= min_rendered]
    kept += [(i, b) for i, b in hidden if any(_siblings(i, other) for other in shown_large)]
    kept.sort(key=lambda pair: pair[0].n)
    images: list[str] = []
    for image, best in kept:
        if best in images:
            verdicts[image.n] = ImageVerdict(best, False, "the same image again")
            continue
        images.append(best)
        verdicts[image.n] = ImageVerdict(best, True, _describe(image, best))
    ordered = tuple(verdicts[i.n] for i in layout.images if i.n in verdicts)
    return tuple(images), ordered


def _siblings(a: MeasuredImage, b: MeasuredImage, levels: int = 3) -> bool:
    """True when `a` and `b` share an ancestor at most `levels` up from each, below the title's
    section (an ancestor is told by its path to the root: tags, classes and ids alike)."""
    return any(
        a.chain[i:] == b.chain[j:] and not a.chain[i].has_title
        for i in range(min(levels, len(a.chain)))
        for j in range(min(levels, len(b.chain)))
    )


def _describe(image: MeasuredImage, best: str) -> str:
    if not image.visible or min(image.box.w, image.box.h) <= 0:
        return "a hidden slide beside the gallery's shown photo"
    box: Box = image.box
    what = "CSS background" if image.kind == "background" else "<img>"
    natural = f", natural {image.natural[0]}x{image.natural[1]}" if image.natural[0] else ""
    size = f"{what} {box.w:.0f}x{box.h:.0f} at ({box.x:.0f}, {box.y:.0f}){natural}"
    return size + ("" if best == image.url else ", taken at its largest rendition")


def product_of(
    html: str, url: str, layout: Layout | None, selectors: Selectors | None = None
) -> ProductData | None:
    """The product of a page: `extract.extract_product`, with the fields it leaves empty (images,
    title, price, currency) filled by `read_product` when the page was rendered (`layout`)."""
    data = extract_product(html, url, selectors)
    if layout is None or (
        data is not None and data.images and data.title and data.price is not None
    ):
        return data
    found = read_product(layout, html, url)
    if data is None:
        if not found.images:
            return None
        data = ProductData(url=url)
    filled: dict[str, Any] = {}
    if not data.images and found.images:
        filled["images"] = found.images
    if not data.title and found.title is not None:
        filled["title"] = found.title.value
    if data.price is None and found.price is not None:
        filled["price"] = found.price.value
        filled["currency"] = data.currency or (found.currency.value if found.currency else None)
    elif (
        data.currency is None
        and found.currency is not None
        and found.price is not None
        and found.price.value == data.price
    ):
        filled["currency"] = found.currency.value
    if not filled:
        return data
    return dataclasses.replace(data, **filled, sources=(*data.sources, "generic"))


def page_kind(
    page: Page, selectors: Selectors | None = None
) -> tuple[str, ProductData | None, ListingData]:
    """`extract.classify` of a fetched page (`fetch.Page`), corrected on a rendered page by the
    generic reader: a product when it finds one and the structured data and selectors found
    neither product nor listing, or when it is `confident` of it although the page links to
    other products."""
    kind, product, listing = classify(page.html, page.url, selectors)
    if page.layout is None or kind == "product":
        return kind, product, listing
    data = product_of(page.html, page.url, page.layout, selectors)
    if data is None or not data.images:
        return kind, product, listing
    if kind == "none" or read_product(page.layout, page.html, page.url).confident:
        return "product", data, listing
    return kind, product, listing
