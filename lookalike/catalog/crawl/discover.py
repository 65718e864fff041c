"""Where product URLs come from besides listings: sitemaps, and listings' "load more" buttons.

- Sitemaps (sitemaps.org): a URL list entry ending in `.xml` / `.xml.gz` is read as a sitemap,
  and with `CrawlOptions.sitemaps` (`--sitemap`) the `Sitemap:` lines of each seed host's
  robots.txt (else `/sitemap.xml`) are read too. A sitemap index is followed to its sitemaps,
  only those whose URL names products when there are such (`sitemap_products_1.xml`,
  `product-sitemap.xml`), at most `MAX_SITEMAPS` files per crawl. Every page URL of the shop's own
  site (the home page aside) is crawled as a product page; one that shows no product is skipped
  with that reason.
- "Load more": a listing whose static HTML has a button saying "load more" (no link to a next
  page) is rendered in the browser, which clicks it (`browser`), each click counting as one
  listing page against `--max-pages`.

Sitemaps are parsed with regular expressions, not an XML parser: only `<loc>` values are needed,
and no entity, DTD or external reference of a hostile file is ever expanded.
"""

from __future__ import annotations

import html as html_lib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

from lookalike.catalog.crawl.client import SITEMAP_MAX_BYTES, PoliteClient
from lookalike.catalog.crawl.safety import check_url, checked_or_none, host_key
from lookalike.errors import FetchError
from lookalike.types import Skipped

MAX_SITEMAPS = 50

LOAD_MORE_WORDS = (
    r"^\W*((load|show|view|see) more( products| items| results)?|more (products|items|results)|"
    r"(mehr|weitere) (produkte |artikel )?(laden|anzeigen)|voir plus( de produits)?|"
    r"(charger|afficher) plus( de produits)?|(cargar|ver) m[aá]s( productos)?|"
    r"(mostra|carica) altri( prodotti)?|(meer laden|toon meer))\W*$"
)
"""The text of a "load more" button (case-insensitive; valid in Python and JavaScript)."""

_LOC = re.compile(r"<(?:\w+:)?loc>\s*(.*?)\s*</(?:\w+:)?loc>", re.IGNORECASE | re.DOTALL)
_INDEX = re.compile(r"<(?:\w+:)?sitemapindex[\s>]", re.IGNORECASE)
_PRODUCTS = re.compile(r"product|produkt|produit|producto|prodotti|/p/", re.IGNORECASE)


def is_sitemap_url(url: str) -> bool:
    """True for a URL that names a sitemap file (`.xml`, `.xml.gz`)."""
    return urlsplit(url).path.lower().endswith((".xml", ".xml.gz"))


def parse_sitemap(text: str) -> tuple[bool, list[str]]:
    """(is a sitemap index, the `<loc>` values in order) of a sitemap's text."""
    locs = [html_lib.unescape(m.group(1)).strip() for m in _LOC.finditer(text)]
    return bool(_INDEX.search(text)), [loc for loc in locs if loc]


def has_load_more(html: str) -> bool:
    """True when a page has a "load more" button that is not a link to another page."""
    words = re.compile(LOAD_MORE_WORDS, re.IGNORECASE)
    tree = LexborHTMLParser(html)
    for node in tree.css("button, a, [role=button], input[type=button], input[type=submit]"):
        href = node.attributes.get("href") or "" if node.tag == "a" else ""
        if href and not href.startswith(("#", "javascript:")):
            continue
        text = (node.text(separator=" ") or node.attributes.get("value") or "").strip()
        if text and len(text) <= 40 and words.search(" ".join(text.split())):
            return True
    return False


@dataclass(frozen=True)
class SitemapResult:
    """Page URLs found (in order, deduplicated), and the sitemap files that failed."""

    urls: tuple[str, ...]
    failures: tuple[Skipped, ...]


def _gunzip(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    out = zlib.decompressobj(wbits=31).decompress(data, SITEMAP_MAX_BYTES + 1)
    if len(out) > SITEMAP_MAX_BYTES:
        raise FetchError(f"sitemap larger than {SITEMAP_MAX_BYTES} bytes uncompressed")
    return out


async def read_sitemaps(client: PoliteClient, roots: Iterable[str]) -> SitemapResult:
    """The page URLs of the sitemaps `roots` (and of the sitemaps they index), own site only."""
    queue = list(dict.fromkeys(roots))
    seen: set[str] = set()
    urls: list[str] = []
    failures: list[Skipped] = []
    while queue and len(seen) < MAX_SITEMAPS:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        try:
            url = check_url(current)
            answer = await client.get(url, kind="sitemap")
            if not answer.ok:
                raise FetchError(f"HTTP {answer.status}", status=answer.status)
            is_index, locs = parse_sitemap(_gunzip(answer.body).decode("utf-8", "replace"))
        except FetchError as exc:
            failures.append(Skipped(current, f"sitemap: {exc}"))
            continue
        site = host_key(url)
        absolute = [checked_or_none(urljoin(url, loc)) for loc in locs]
        own = [u for u in absolute if u is not None and host_key(u) == site]
        if is_index:
            products = [s for s in own if _PRODUCTS.search(urlsplit(s).path)]
            queue.extend(products or own)
        else:
            urls.extend(u for u in own if urlsplit(u).path not in ("", "/"))
    return SitemapResult(tuple(dict.fromkeys(urls)), tuple(failures))


async def host_sitemaps(client: PoliteClient, url: str) -> list[str]:
    """The sitemaps robots.txt names for `url`'s host, else its `/sitemap.xml`."""
    named = [u for s in (await client.robots(url)).sitemaps if (u := checked_or_none(s))]
    return named or [check_url(host_key(url) + "/sitemap.xml")]
