"""Fetchers: a page URL in, its HTML out.

Two fetchers: `StaticFetcher` (the HTML as the server sends it, through `PoliteClient`; fast, no
scripts run) and `browser.BrowserFetcher` (Chromium runs the page's scripts and scrolls it; for
shops that render with JavaScript). Both fetch every byte through the same `PoliteClient`, so
robots.txt, rate limits and safety rules apply alike.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass

from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.layout import Layout
from lookalike.errors import FetchError


@dataclass(frozen=True)
class Validators:
    """What a conditional request sends back: the page's last ETag and Last-Modified."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class ScrollGoal:
    """Scroll a listing until `count` elements match `selector` (or nothing new loads),
    clicking at most `load_more` "load more" buttons on the way."""

    selector: str
    count: int
    load_more: int = 0
    """"load more" buttons the browser may click (each counts as a listing page)."""
    button: str = ""
    """CSS selector of the shop's own "load more" button (besides the usual words)."""


@dataclass(frozen=True)
class Page:
    """A fetched page.

    url: the final URL (after redirects); html: the document (rendered DOM for the browser).
    not_modified: the server answered 304 to a conditional request (html is empty).
    body_sha256: hash of the bytes the server sent (None when rendered).
    layout: what the browser measured on a rendered page (see `layout`), else None.
    load_more: "load more" buttons the browser clicked on this page.
    """

    url: str
    html: str
    status: int
    rendered: bool = False
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    body_sha256: str | None = None
    layout: Layout | None = None
    load_more: int = 0


class StaticFetcher:
    """The HTML as the server sends it. `validators` make the request conditional."""

    def __init__(self, client: PoliteClient) -> None:
        self.client = client

    async def fetch(self, url: str, *, validators: Validators | None = None) -> Page:
        headers: dict[str, str] = {}
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        answer = await self.client.get(url, kind="page", headers=headers)
        if answer.status == 304 and validators is not None:
            return Page(
                answer.url,
                "",
                304,
                etag=answer.headers.get("etag") or validators.etag,
                last_modified=answer.headers.get("last-modified") or validators.last_modified,
                not_modified=True,
            )
        if not answer.ok:
            raise FetchError(f"HTTP {answer.status}", status=answer.status)
        # Kept under the final URL only: a browser asked to render `url` after a redirect must
        # see the redirect itself, then finds the body here.
        self.client.remember(answer.url, answer)
        return Page(
            answer.url,
            decode_html(answer.body, answer.headers.get("content-type")),
            answer.status,
            etag=answer.headers.get("etag"),
            last_modified=answer.headers.get("last-modified"),
            body_sha256=hashlib.sha256(answer.body).hexdigest(),
        )


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def decode_html(body: bytes, content_type: str | None) -> str:
    """HTML bytes as text: a BOM, else the HTTP charset, else a `<meta charset>` in the first
    4 KiB, else UTF-8; undecodable bytes become U+FFFD (a page is never refused for its bytes)."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace")
    candidates = []
    found = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type or "", re.I)
    if found:
        candidates.append(found.group(1))
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        candidates.append(meta.group(1).decode("ascii", errors="ignore"))
    for name in candidates:
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            continue
        return body.decode(codec, errors="replace")
    return body.decode("utf-8", errors="replace")
