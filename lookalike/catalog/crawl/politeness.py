"""Being a good citizen: robots.txt, per-host rate and concurrency limits, retries with backoff.

Defaults (`Politeness()`): one request per second and two in flight per host, a 20 s timeout per
network step, three retries on 429/5xx and on connection errors with exponential backoff, and
`Retry-After` honoured up to 5 minutes (a longer wait gives the URL up rather than sleeping for
hours). robots.txt is read per host and obeyed (RFC 9309: longest match wins, `*` and `$`
patterns, `Allow` wins ties; a 4xx robots.txt allows everything, an unreachable one (5xx,
network error) forbids the host); its `Crawl-delay` slows the host further, never speeds it up.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from lookalike import __version__
from lookalike.errors import CrawlError

ROBOTS_TOKEN = "lookalike-crawler"
"""The product token robots.txt groups are matched against (`User-agent: lookalike-crawler`)."""

DEFAULT_USER_AGENT = (
    f"{ROBOTS_TOKEN}/{__version__} (catalogue crawler of the lookalike visual search tool; "
    "obeys robots.txt)"
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers worth another try after a pause; every other status is final."""


@dataclass(frozen=True)
class Politeness:
    """How hard the crawler may push one host.

    rate: requests started per second, per host (`scheme://host:port`).
    concurrency: requests in flight at once, per host.
    timeout_s: connect, read and write timeout of one network step, in seconds; a whole request
        (all its steps, body included) may take at most 4x this.
    retries: further attempts after a 429, a 5xx or a connection error (GET and HEAD only).
    backoff_s, max_backoff_s: pause before retry n is about backoff_s * 2**n (jittered, capped).
    max_retry_after_s: a `Retry-After` longer than this gives the URL up instead of waiting.
    obey_robots: read and obey robots.txt (turn off only for sites you own or may crawl anyway).
    max_redirects: redirects followed per request; each hop is checked like a new URL.
    """

    user_agent: str = DEFAULT_USER_AGENT
    rate: float = 1.0
    concurrency: int = 2
    timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 300.0
    obey_robots: bool = True
    max_redirects: int = 5

    def __post_init__(self) -> None:
        problems = []
        if not self.rate > 0:
            problems.append(f"rate must be > 0 requests/s, got {self.rate}")
        if self.concurrency < 1:
            problems.append(f"concurrency must be at least 1, got {self.concurrency}")
        if not self.timeout_s > 0:
            problems.append(f"timeout must be > 0 s, got {self.timeout_s}")
        if self.retries < 0:
            problems.append(f"retries must be >= 0, got {self.retries}")
        if not self.user_agent.strip():
            problems.append("the user agent must not be empty")
        if problems:
            raise CrawlError("; ".join(problems))

    @property
    def interval_s(self) -> float:
        """Least time between two request starts on one host, in seconds."""
        return 1.0 / self.rate


class HostGate:
    """One host's limits: at most `concurrency` requests in flight, starts `interval_s` apart,
    and none before a pause (429 / Retry-After / backoff) has passed.

    Used from one event loop only (asyncio is single-threaded: the check-and-take of a start slot
    below has no await in between, so it needs no lock).
    """

    def __init__(self, concurrency: int, interval_s: float) -> None:
        self.interval_s = interval_s
        self._slots = asyncio.Semaphore(concurrency)
        self._next_start = 0.0
        self._paused_until = 0.0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            while True:
                now = time.monotonic()
                ready = max(self._next_start, self._paused_until)
                if now >= ready:
                    self._next_start = now + self.interval_s
                    break
                await asyncio.sleep(ready - now)
            yield

    def pause(self, seconds: float) -> None:
        """No request to this host starts in the next `seconds`."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def slow_down(self, interval_s: float) -> None:
        """Never start requests closer than `interval_s` (robots.txt Crawl-delay)."""
        self.interval_s = max(self.interval_s, interval_s)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date), else None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Pause before retry `attempt` (0-based): base * 2**attempt, capped, jittered to 50-100 %
    so that many clients that failed together do not retry together."""
    return min(cap_s, base_s * (2**attempt)) * (0.5 + random.random() / 2)


# -- robots.txt (RFC 9309) --------------------------------------------------------------------


@dataclass(frozen=True)
class RobotsRule:
    allow: bool
    pattern: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Robots:
    """The rules of one host's robots.txt for one user agent.

    `allow_all` / `disallow_all` stand for a missing (4xx) or unreachable (5xx) file.
    """

    rules: tuple[RobotsRule, ...] = ()
    crawl_delay_s: float | None = None
    disallow_all: bool = False
    reason: str = ""
    sitemaps: tuple[str, ...] = ()
    """The file's `Sitemap:` URLs (they belong to no group: every agent sees them)."""

    def allowed(self, url: str) -> bool:
        """True when the URL's path and query may be fetched (the longest matching rule wins,
        `Allow` wins a tie; `/robots.txt` itself is always allowed)."""
        if self.disallow_all:
            return False
        parts = urlsplit(url)
        path = _normalise_path(parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if path == "/robots.txt":
            return True
        matching = [
            (len(rule.pattern), rule.allow) for rule in self.rules if rule.regex.match(path)
        ]
        return max(matching)[1] if matching else True


ALLOW_ALL = Robots()


def parse_robots(text: str, token: str = ROBOTS_TOKEN) -> Robots:
    """The rules in `text` that apply to product token `token`: those of every group naming it
    (case-insensitive), else those of the `*` groups."""
    groups: list[tuple[list[str], list[tuple[bool, str]], list[float]]] = []
    sitemaps: list[str] = []
    in_agents = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        key = key.lower()
        if key == "sitemap":
            if value:
                sitemaps.append(value)
            continue
        if key == "user-agent":
            if not in_agents:
                groups.append(([], [], []))
                in_agents = True
            groups[-1][0].append(value.lower())
            continue
        in_agents = False
        if not groups:
            continue  # rules before any user-agent line belong to no group
        if key in ("allow", "disallow"):
            if value:  # an empty Disallow allows everything: no rule
                groups[-1][1].append((key == "allow", value))
        elif key == "crawl-delay":
            with suppress(ValueError):
                groups[-1][2].append(float(value))
    chosen = [g for g in groups if token.lower() in g[0]]
    if not chosen:
        chosen = [g for g in groups if "*" in g[0]]
    rules = tuple(
        RobotsRule(allow, pattern, _pattern_regex(pattern))
        for _, group_rules, _ in chosen
        for allow, pattern in group_rules
    )
    delays = [d for _, _, ds in chosen for d in ds if d >= 0]
    return Robots(rules, max(delays) if delays else None, sitemaps=tuple(sitemaps))


def _normalise_path(path: str) -> str:
    # Compare decoded paths, so `/a%2Db` and `/a-b` match the same rules; keep `%2F` (a slash
    # that is not a separator) and `%25` encoded.
    return unquote(path.replace("%2F", "%252F").replace("%2f", "%252F"))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    anchored = pattern.endswith("$")
    body = _normalise_path(pattern[:-1] if anchored else pattern)
    regex = ".*".join(re.escape(part) for part in body.split("*"))
    return re.compile(regex + ("$" if anchored else ""), re.DOTALL)
