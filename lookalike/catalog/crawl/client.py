"""The one HTTP client every request of a crawl goes through, the browser's included.

`PoliteClient.get` applies, in order: URL safety (`safety.check_url`), robots.txt, the host's gate
(rate and concurrency), the timeouts, the size cap and content type of the kind of body asked for,
retries with backoff (honouring `Retry-After`), and redirects (each hop checked again). The
connection itself is made by `safety.GuardedTransport`, which refuses non-public addresses after
DNS resolution. Environment proxies are not used (`trust_env=False`): a proxy would take the
address check out of our hands.

It also keeps a small in-memory cache of the bodies fetched in this run, so the browser re-uses a
page the static fetcher already fetched, and image bytes the browser loaded are not downloaded a
second time.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal
from urllib.parse import urljoin

import httpx

from lookalike.catalog.crawl.politeness import (
    ALLOW_ALL,
    RETRY_STATUSES,
    ROBOTS_TOKEN,
    HostGate,
    Politeness,
    Robots,
    backoff_delay,
    parse_retry_after,
    parse_robots,
)
from lookalike.catalog.crawl.safety import (
    GuardedTransport,
    SafetyLimits,
    check_addresses,
    check_url,
    checked_or_none,
    host_key,
    media_type,
)
from lookalike.errors import FetchError, RobotsDisallowedError, UnsafeURLError

Kind = Literal["page", "image", "asset", "robots", "sitemap"]
"""What a body is for: decides the size cap, the accepted content types and the Accept header."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least the first 500 KiB
SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # sitemaps.org: at most 50 MB uncompressed
_ACCEPT = {
    "page": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
    "image": "image/avif,image/webp,image/jpeg,image/png,image/*;q=0.8",
    "asset": "*/*",
    "robots": "text/plain,*/*;q=0.1",
    "sitemap": "application/xml,text/xml;q=0.9,application/gzip;q=0.8,*/*;q=0.1",
}


@dataclass(frozen=True)
class Response:
    """A complete answer. `url` is the final URL (after redirects); header names are lower case;
    `header_list` keeps repeated headers (Set-Cookie) apart."""

    url: str
    status: int
    header_list: tuple[tuple[str, str], ...]
    body: bytes
    headers: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        merged: dict[str, str] = {}
        for name, value in self.header_list:
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        object.__setattr__(self, "headers", merged)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def media_type(self) -> str:
        return media_type(self.headers.get("content-type"))


class PoliteClient:
    """See the module docstring. Use as `async with PoliteClient(...) as client:`.

    requests: how many HTTP requests went out, by kind (robots.txt included); for reports.
    """

    def __init__(
        self,
        politeness: Politeness | None = None,
        limits: SafetyLimits | None = None,
        *,
        cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.politeness = politeness or Politeness()
        self.limits = limits or SafetyLimits()
        self.requests: collections.Counter[str] = collections.Counter()
        self._http = httpx.AsyncClient(
            transport=GuardedTransport(
                partial(check_addresses, allow_private=self.limits.allow_private),
                max_connections=64,
            ),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self.politeness.timeout_s),
        )
        self._gates: dict[str, HostGate] = {}
        self._robots: dict[str, Robots] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._cache: collections.OrderedDict[str, Response] = collections.OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes

    async def __aenter__(self) -> PoliteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the cache of this run ----------------------------------------------------------------

    def remember(self, url: str, response: Response) -> None:
        """Keep a successful GET answer for `recall` (least recently used bodies are dropped)."""
        if not response.ok or len(response.body) > self._cache_limit // 4:
            return
        key = checked_or_none(url)  # the same key `recall` looks up
        if key is None:
            return
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= len(old.body)
        self._cache[key] = response
        self._cache_bytes += len(response.body)
        while self._cache_bytes > self._cache_limit and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= len(dropped.body)

    def recall(self, url: str) -> Response | None:
        """The answer remembered for `url` in this run, or None."""
        key = checked_or_none(url)
        if key is None or key not in self._cache:
            return None
        self._cache.move_to_end(key)
        return self._cache[key]

    # -- requests -----------------------------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        kind: Kind,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        content: bytes | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Fetch `url` politely and safely (see the module docstring).

        Returns the final answer whatever its status (callers decide what a 404 means). Raises
        UnsafeURLError, RobotsDisallowedError, or FetchError (timeouts, connection errors, too many
        redirects, a body over the cap or of the wrong type, a Retry-After over the limit).
        """
        current = check_url(url)
        for _ in range(self.politeness.max_redirects + 1):
            await self._check_robots(current)
            response = await self._send(method, current, kind, headers, content)
            location = response.headers.get("location")
            if not follow_redirects or response.status not in REDIRECTS or not location:
                return response
            current = check_url(urljoin(current, location))
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, content = "GET", None
        raise FetchError(f"more than {self.politeness.max_redirects} redirects from {url}")

    def gate(self, url: str) -> HostGate:
        key = host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            p = self.politeness
            gate = self._gates[key] = HostGate(p.concurrency, p.interval_s)
        return gate

    async def _send(
        self,
        method: str,
        url: str,
        kind: Kind,
        headers: Mapping[str, str] | None,
        content: bytes | None,
    ) -> Response:
        p = self.politeness
        gate = self.gate(url)
        attempts = p.retries + 1 if method in ("GET", "HEAD") else 1
        error = ""
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                async with gate.slot():
                    self.requests[kind] += 1
                    response = await asyncio.wait_for(
                        self._once(method, url, kind, headers, content), timeout=p.timeout_s * 4
                    )
            except (httpx.InvalidURL, UnicodeError) as exc:
                # check_url let through a host httpx cannot encode (an invalid IDNA name): one
                # URL's problem, not the crawl's (the crawl records it and goes on).
                raise UnsafeURLError(f"malformed URL {url!r}: {exc}") from None
            except (TimeoutError, httpx.TimeoutException):
                error = f"timed out after {p.timeout_s:g} s"
            except httpx.TransportError as exc:
                error = f"connection failed: {type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.status not in RETRY_STATUSES or last:
                    return response
                wait = parse_retry_after(response.headers.get("retry-after"))
                if wait is not None and wait > p.max_retry_after_s:
                    raise FetchError(
                        f"HTTP {response.status}: the server asks to retry after {wait:.0f} s, "
                        f"more than the {p.max_retry_after_s:.0f} s limit",
                        status=response.status,
                    )
                # The whole host waits, not just this URL: that is what the server asked for.
                gate.pause(
                    wait
                    if wait is not None
                    else backoff_delay(attempt, p.backoff_s, p.max_backoff_s)
                )
                continue
            if not last:
                gate.pause(backoff_delay(attempt, p.backoff_s, p.max_backoff_s))
        raise FetchError(error)

    async def _once(
        self,
        method: str,
        url: str,
        kind: Kind,
        headers: Mapping[str, str] | None,
        content: bytes | None,
    ) -> Response:
        sent = {"User-Agent": self.politeness.user_agent, "Accept": _ACCEPT[kind]}
        sent.update(headers or {})
        cap = {
            "page": self.limits.max_page_bytes,
            "image": self.limits.max_image_bytes,
            "robots": _ROBOTS_MAX_BYTES,
            "sitemap": SITEMAP_MAX_BYTES,
        }.get(kind, self.limits.max_asset_bytes)
        async with self._http.stream(method, url, headers=sent, content=content) as answer:
            media = media_type(answer.headers.get("content-type"))
            if 200 <= answer.status_code < 300 and media:
                if kind == "page" and media not in self.limits.page_types:
                    raise FetchError(f"not an HTML page: {media}")
                if kind == "image" and media not in self.limits.image_types:
                    raise FetchError(f"not a supported image type: {media}")
            declared = answer.headers.get("content-length", "")
            if kind != "robots" and declared.isdigit() and int(declared) > cap:
                raise FetchError(f"{kind} of {declared} bytes is over the {cap} bytes limit")
            body = bytearray()
            # Counted after content decoding, so a compressed bomb stops at the cap too.
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > cap:
                    if kind == "robots":  # RFC 9309: parse what fits, ignore the rest
                        del body[cap:]
                        break
                    raise FetchError(f"{kind} larger than the {cap} bytes limit")
            return Response(
                str(answer.url),
                answer.status_code,
                tuple((k.lower(), v) for k, v in answer.headers.multi_items()),
                bytes(body),
            )

    # -- robots.txt ---------------------------------------------------------------------------

    async def robots(self, url: str) -> Robots:
        """The robots.txt rules for `url`'s host, fetched once per host and crawl."""
        key = host_key(url)
        if key in self._robots:
            return self._robots[key]
        async with self._robots_locks.setdefault(key, asyncio.Lock()):
            if key not in self._robots:
                rules = await self._fetch_robots(key)
                if rules.crawl_delay_s:
                    self.gate(url).slow_down(rules.crawl_delay_s)
                self._robots[key] = rules
        return self._robots[key]

    async def _fetch_robots(self, key: str) -> Robots:
        robots_url = f"{key}/robots.txt"
        current = robots_url
        try:
            for _ in range(self.politeness.max_redirects + 1):
                answer = await self._send("GET", current, "robots", None, None)
                location = answer.headers.get("location")
                if answer.status in REDIRECTS and location:
                    current = check_url(urljoin(current, location))
                    continue
                break
        except UnsafeURLError:
            raise  # the host itself is refused: say that, not "robots.txt unreachable"
        except FetchError as exc:
            return Robots(disallow_all=True, reason=f"{robots_url} unreachable ({exc})")
        if answer.ok:
            return parse_robots(answer.body.decode("utf-8", errors="replace"), ROBOTS_TOKEN)
        if 400 <= answer.status < 500 or answer.status in REDIRECTS:
            return ALLOW_ALL  # RFC 9309: an unavailable robots.txt puts no limit
        return Robots(disallow_all=True, reason=f"{robots_url} unreachable (HTTP {answer.status})")

    async def _check_robots(self, url: str) -> None:
        if not self.politeness.obey_robots:
            return
        rules = await self.robots(url)
        if not rules.allowed(url):
            raise RobotsDisallowedError(
                f"{rules.reason or 'robots.txt disallows it'}: not fetching {url} "
                "(pass --ignore-robots to override)"
            )
