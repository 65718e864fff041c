"""Listing pages: product links and pagination (next-page links, `?page=N` numbers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lookalike.catalog.crawl.css import Selectors
from lookalike.catalog.crawl.page import IMAGE_PATH, Doc
from lookalike.catalog.crawl.structured import ld_products, types, walk


@dataclass(frozen=True)
class ListingData:
    """Product links (absolute, same site, in page order) and next-page candidates, best first."""

    products: tuple[str, ...] = ()
    next_pages: tuple[str, ...] = ()


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
        return urlunsplit(parts._replace(path=_PATH_PAGE.sub(f"/page/{number}/", parts.path)))
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


def listing_of(doc: Doc, selectors: Selectors) -> ListingData:
    found: list[str] = []
    for block in doc.json_ld:
        for obj in walk(block):
            if "ItemList" in types(obj):
                for element in obj.get("itemListElement") or []:
                    if isinstance(element, dict):
                        item = element.get("item")
                        ref = element.get("url") or (
                            item.get("url") or item.get("@id") if isinstance(item, dict) else item
                        )
                        found.append(doc.abs(ref) or "")
    declared = ld_products(doc)
    if len(declared) > 1:  # one Product per card: a listing that declares its products
        found += [doc.abs(p.get("url")) or "" for p in declared]
    if selectors.product_links:
        for node in doc.tree.css(", ".join(selectors.product_links)):
            link = node if node.tag in ("a", "area") else node.css_first("a[href]")
            if link is not None:
                found.append(doc.abs(link.attributes.get("href")) or "")

    linked = doc.tree.css(", ".join(selectors.next_page)) if selectors.next_page else []
    next_pages = [u for n in linked if (u := doc.abs(n.attributes.get("href"))) and u != doc.url]
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
    site = (urlsplit(doc.url).hostname or "").removeprefix("www.")
    products = [
        u
        for u in dict.fromkeys(found)
        if u
        and u not in pagination
        and (urlsplit(u).hostname or "").removeprefix("www.") == site
        and not IMAGE_PATH.search(urlsplit(u).path)
        and not (page_number(u) and _without_page(u) == same_listing)
    ]
    return ListingData(tuple(products), tuple(next_pages))
