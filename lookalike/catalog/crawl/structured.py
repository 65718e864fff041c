"""The structured sources of a product: schema.org JSON-LD, schema.org microdata, OpenGraph and
product meta tags; each a dict of field -> value (empty when the source says nothing)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from selectolax.lexbor import LexborNode

from lookalike.catalog.crawl.page import Doc, canonical_link, renditions
from lookalike.catalog.crawl.values import clean_text, parse_currency, parse_price

_PRODUCT_TYPES = frozenset({"Product", "ProductGroup", "IndividualProduct", "ProductModel"})
_MICRODATA = re.compile(r"schema\.org/(Product|ProductGroup|IndividualProduct)\b")
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


def walk(obj: object, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 32:
        return
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from walk(value, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk(value, depth + 1)


def types(obj: Mapping[str, Any]) -> set[str]:
    raw = obj.get("@type")
    names = raw if isinstance(raw, list) else [raw]
    return {str(n).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] for n in names if n}


def _same_page(a: str | None, b: str) -> bool:
    if not a:
        return False
    return a.split("#", 1)[0].rstrip("/") == b.split("#", 1)[0].rstrip("/")


def ld_products(doc: Doc) -> list[dict[str, Any]]:
    return [o for block in doc.json_ld for o in walk(block) if types(o) & _PRODUCT_TYPES]


def _ld_image_refs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        ref = value.get("contentUrl") or value.get("url") or value.get("@id")
        return [ref] if isinstance(ref, str) else []
    return [r for v in value for r in _ld_image_refs(v)] if isinstance(value, list) else []


def _ld_offer(offers: object) -> tuple[object, object]:
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


def from_json_ld(doc: Doc) -> dict[str, Any]:
    products = ld_products(doc)
    if not products:
        return {}
    canonical = canonical_link(doc)
    main = next(
        (p for p in products if _same_page(doc.abs(p.get("url")), doc.url)),
        next(
            (p for p in products if canonical and _same_page(doc.abs(p.get("url")), canonical)),
            products[0],
        ),
    )
    declared = main.get("hasVariant")
    variants = [
        v for v in (declared if isinstance(declared, list) else [declared]) if isinstance(v, dict)
    ]
    images = _ld_image_refs(main.get("image"))
    images += [ref for variant in variants for ref in _ld_image_refs(variant.get("image"))]
    price, currency = _ld_offer(main.get("offers"))
    if price is None:
        for variant in variants:
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


def _joined(value: object) -> str | None:
    if isinstance(value, list):
        parts = [t for t in (clean_text(v, 100) for v in value) if t]
        return ", ".join(dict.fromkeys(parts)) or None
    return clean_text(value, 200)


def _category(value: object) -> str | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    return clean_text(value, 300)


def _breadcrumb_category(doc: Doc) -> str | None:
    """The crumb before the product in a JSON-LD BreadcrumbList (`Home > Shirts > X` -> Shirts)."""
    for block in doc.json_ld:
        for obj in walk(block):
            if "BreadcrumbList" not in types(obj):
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


def _microdata_value(doc: Doc, node: LexborNode) -> str | None:
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


def from_microdata(doc: Doc) -> dict[str, Any]:
    typed = doc.tree.css("[itemscope][itemtype]")
    scope = next((n for n in typed if _MICRODATA.search(n.attributes.get("itemtype") or "")), None)
    if scope is None:
        return {}
    props = _microdata_props(scope)

    def first(name: str, within: Mapping[str, list[LexborNode]] = props) -> str | None:
        for node in within.get(name, []):
            if "itemscope" in node.attributes and name in ("brand", "offers"):
                return first("name", _microdata_props(node)) if name == "brand" else None
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


def from_opengraph(doc: Doc) -> dict[str, Any]:
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
