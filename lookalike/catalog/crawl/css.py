"""The configurable CSS selectors (`Selectors`) and what they find on a page."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from lookalike.catalog.crawl.page import Doc, node_images
from lookalike.catalog.crawl.values import clean_text, parse_currency, parse_price
from lookalike.errors import CrawlError

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


def from_selectors(doc: Doc, selectors: Selectors) -> dict[str, Any]:
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
    found = doc.tree.css(", ".join(selectors.images)) if selectors.images else []
    images = [url for node in found for url in node_images(doc, node)]
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
