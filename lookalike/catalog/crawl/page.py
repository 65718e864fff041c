"""The parsed page (`Doc`: base URL, JSON-LD blocks, meta tags) and image renditions: every
image is taken at its largest rendition (see `lookalike.catalog.crawl.extract`)."""

from __future__ import annotations

import json
import re
from functools import cached_property
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from lookalike.catalog.crawl.safety import check_url
from lookalike.errors import UnsafeURLError
from lookalike.types import JSONValue


class Doc:
    def __init__(self, html: str, url: str) -> None:
        self.tree = LexborHTMLParser(html)
        self.url = url
        base = self.tree.css_first("base[href]")
        self.base = (self.abs(base.attributes.get("href")) if base else None) or url

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

    @cached_property
    def json_ld(self) -> list[JSONValue]:
        blocks: list[JSONValue] = []
        for node in self.tree.css("script"):
            kind = (node.attributes.get("type") or "").split(";", 1)[0].strip().lower()
            if kind != "application/ld+json":
                continue
            text = (node.text(deep=True, strip=False) or "").strip()
            text = re.sub(r"^\s*(?://\s*)?<!\[CDATA\[|(?://\s*)?\]\]>\s*$", "", text)
            try:
                blocks.append(json.loads(text, strict=False))
            except ValueError:
                continue  # a broken block must not hide the others
        return blocks

    @cached_property
    def meta(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for node in self.tree.css("meta[content]"):
            a = node.attributes
            key = (a.get("property") or a.get("name") or a.get("itemprop") or "").strip()
            content = (a.get("content") or "").strip()
            if key and content:
                found.setdefault(key.lower(), []).append(content)
        return found

    @cached_property
    def best_rendition(self) -> dict[str, str]:
        """Every rendition URL of every `<img>` -> the largest rendition of that image."""
        best: dict[str, str] = {}
        for node in self.tree.css("img"):
            candidates = renditions(self, node)
            for candidate in candidates:
                best.setdefault(candidate, candidates[0])
        return best

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
IMAGE_PATH = re.compile(r"\.(?:jpe?g|png|webp|avif|gif|bmp|tiff?|heic|heif)$", re.IGNORECASE)


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


def renditions(doc: Doc, node: LexborNode) -> list[str]:
    """Absolute URLs of one image element's renditions, largest first (see the module docstring)."""
    zoom: list[str | None] = []
    ancestor: LexborNode | None = node
    for _ in range(4):  # the element and a few wrappers: zoom links and attributes sit there
        if ancestor is None:
            break
        attrs = ancestor.attributes
        zoom.extend(attrs.get(a) for a in _ZOOM_ATTRS)
        if ancestor.tag == "a" and IMAGE_PATH.search(urlsplit(attrs.get("href") or "").path):
            zoom.append(attrs.get("href"))
        ancestor = ancestor.parent
    sets: list[tuple[str, float | None, float | None]] = []
    sources = [node]
    parent = node.parent
    if parent is not None and parent.tag == "picture":
        raster = [s for s in parent.css("source") if "svg" not in (s.attributes.get("type") or "")]
        sources = raster + sources
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


def node_images(doc: Doc, node: LexborNode) -> list[str]:
    """The largest rendition of an `<img>`, or of the images inside / linked by another node."""
    if node.tag == "img":
        return renditions(doc, node)[:1]
    attrs = node.attributes
    for attr in (*_ZOOM_ATTRS, "href", "content", "src", *_LAZY_ATTRS):
        url = doc.abs(attrs.get(attr))
        if url and (attr != "href" or IMAGE_PATH.search(urlsplit(url).path)):
            return [url]
    return [r[0] for r in (renditions(doc, img) for img in node.css("img")) if r]


def canonical_link(doc: Doc) -> str | None:
    node = doc.tree.css_first("link[rel~=canonical][href]")
    return doc.abs(node.attributes.get("href")) if node else None
