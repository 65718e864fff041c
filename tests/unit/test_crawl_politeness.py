"""Politeness: robots.txt, rate and concurrency per host, retries, Retry-After, timeouts, UA."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.crawler import crawl
from lookalike.catalog.crawl.politeness import (
    DEFAULT_USER_AGENT,
    HostGate,
    Politeness,
    parse_retry_after,
    parse_robots,
)
from lookalike.catalog.crawl.safety import SafetyLimits
from lookalike.errors import FetchError, RobotsDisallowedError
from tests.fixtures.shop.server import ShopServer, quick_options


@pytest.fixture
def shop() -> ShopServer:
    with ShopServer(slow_s=2.5) as server:
        yield server


ROBOTS = """
# comment
User-agent: *
Disallow: /private/
Disallow: /*?sort=
Disallow: /*.pdf$
Allow: /private/open/
Crawl-delay: 2

User-agent: Lookalike-Crawler
User-agent: other
Disallow: /only-for-us/
Allow: /only-for-us/but-this
Disallow:
"""


def test_robots_rules_follow_rfc_9309() -> None:
    star = parse_robots(ROBOTS, "somebot")
    assert not star.allowed("http://s.test/private/x")
    assert star.allowed("http://s.test/private/open/x")  # the longer Allow wins
    assert not star.allowed("http://s.test/c/shirts?sort=price")  # `*` wildcard
    assert star.allowed("http://s.test/c/shirts?page=2")
    assert not star.allowed("http://s.test/files/a.pdf")
    assert star.allowed("http://s.test/files/a.pdf?x=1")  # `$` anchors the end
    assert star.allowed("http://s.test/robots.txt")
    assert star.crawl_delay_s == 2
    ours = parse_robots(ROBOTS, "lookalike-crawler")  # our group (case-insensitive) replaces `*`
    assert ours.allowed("http://s.test/private/x")
    assert not ours.allowed("http://s.test/only-for-us/page")
    assert ours.allowed("http://s.test/only-for-us/but-this-one")
    assert ours.crawl_delay_s is None
    assert parse_robots("").allowed("http://s.test/anything")
    # Percent-encoding does not dodge a rule.
    assert not star.allowed("http://s.test/%70rivate/x")


def test_retry_after_values() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_host_gate_spaces_starts_and_honours_pauses() -> None:
    async def go() -> list[float]:
        gate = HostGate(concurrency=4, interval_s=0.1)
        starts: list[float] = []

        async def one() -> None:
            async with gate.slot():
                starts.append(time.monotonic())

        await one()
        gate.pause(0.3)
        await asyncio.gather(*(one() for _ in range(3)))
        return starts

    starts = asyncio.run(go())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.29  # the pause
    assert all(g >= 0.095 for g in gaps[1:])  # the rate


def test_robots_txt_is_obeyed_and_can_be_overridden(shop: ShopServer, tmp_path: Path) -> None:
    private = f"{shop.url}/private/secret-dress.html"
    summary = crawl([private], tmp_path / "a", quick_options())
    assert summary.items == 0
    assert "robots.txt disallows it" in summary.failures[0].reason
    assert [h.path for h in shop.hits()] == ["/robots.txt"]  # asked once, obeyed
    shop.clear_log()
    summary = crawl([private], tmp_path / "b", quick_options(politeness={"obey_robots": False}))
    assert summary.items == 1
    assert "/robots.txt" not in [h.path for h in shop.hits()]


def test_every_request_says_who_we_are(shop: ShopServer, tmp_path: Path) -> None:
    crawl([f"{shop.url}/product/linen-shirt.html"], tmp_path / "out", quick_options())
    agents = {h.headers.get("user-agent") for h in shop.hits()}
    assert agents == {DEFAULT_USER_AGENT}
    assert DEFAULT_USER_AGENT.startswith("lookalike-crawler/")


def test_429_retry_after_is_honoured(shop: ShopServer, tmp_path: Path) -> None:
    summary = crawl([f"{shop.url}/product/busy-hat.html"], tmp_path / "out", quick_options())
    assert summary.items == 1 and not summary.failures
    hits = shop.hits("/product/busy-hat.html")
    assert len(hits) == 2
    assert hits[1].at - hits[0].at >= 0.95  # Retry-After: 1


def test_a_retry_after_beyond_the_limit_gives_the_url_up(tmp_path: Path) -> None:
    with ShopServer(retry_after="3600") as shop:
        summary = crawl([f"{shop.url}/product/busy-hat.html"], tmp_path / "out", quick_options())
    assert summary.items == 0
    assert "retry after 3600 s, more than the 300 s limit" in summary.failures[0].reason


def test_5xx_retried_with_backoff_then_given_up(shop: ShopServer) -> None:
    async def get(retries: int) -> int:
        p = Politeness(rate=100, timeout_s=2, retries=retries, backoff_s=0.1)
        async with PoliteClient(p, SafetyLimits(allow_private=True)) as client:
            return (await client.get(f"{shop.url}/shop/", kind="page")).status

    shop.flaky["/shop/"] = 2
    assert asyncio.run(get(retries=2)) == 200
    hits = shop.hits("/shop/")
    assert len(hits) == 3
    assert hits[1].at - hits[0].at >= 0.05 and hits[2].at - hits[1].at >= 0.1  # growing pauses
    shop.flaky["/shop/"] = 5
    assert asyncio.run(get(retries=1)) == 503  # the last answer is returned; the caller decides


def test_slow_page_times_out(shop: ShopServer, tmp_path: Path) -> None:
    started = time.monotonic()
    summary = crawl(
        [f"{shop.url}/product/slow-scarf.html"],
        tmp_path / "out",
        quick_options(politeness={"timeout_s": 0.5, "retries": 0}),
    )
    assert time.monotonic() - started < 2.4  # the server would answer after 2.5 s
    assert summary.items == 0 and summary.failures[0].reason == "timed out after 0.5 s"


def test_rate_limit_per_host(shop: ShopServer, tmp_path: Path) -> None:
    crawl(
        [f"{shop.url}/product/linen-shirt.html", f"{shop.url}/product/wool-coat.html"],
        tmp_path / "out",
        quick_options(politeness={"rate": 8.0, "concurrency": 4}),
    )
    times = sorted(h.at for h in shop.hits())
    assert len(times) >= 7  # robots, 2 pages, 4 images
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 8 requests/s: starts 0.125 s apart. Arrival times at the server jitter with connection
    # set-up and a busy machine, so: the average spacing holds, and no two arrive together.
    assert times[-1] - times[0] >= 0.95 * 0.125 * len(gaps), gaps
    assert min(gaps) >= 0.06, gaps


def test_crawl_delay_slows_the_host(shop: ShopServer, tmp_path: Path) -> None:
    shop.overrides["/robots.txt"] = "User-agent: *\nCrawl-delay: 0.3\n"
    crawl([f"{shop.url}/product/canvas-bag.html"], tmp_path / "out", quick_options())
    times = sorted(h.at for h in shop.hits())
    assert len(times) == 4  # robots, the page, 2 images
    assert min(b - a for a, b in itertools.pairwise(times[1:])) >= 0.28


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limit_per_host(tmp_path: Path, concurrency: int) -> None:
    with ShopServer(image_delay_s=0.15) as shop:
        crawl(
            [f"{shop.url}/product/{p}.html" for p in ("linen-shirt", "wool-coat", "canvas-bag")],
            tmp_path / "out",
            quick_options(politeness={"concurrency": concurrency}),
        )
        assert shop.max_inflight == concurrency  # reached, never exceeded


def test_robots_disallow_reaches_images_too(shop: ShopServer) -> None:
    async def go() -> None:
        async with PoliteClient(
            Politeness(rate=100, timeout_s=2), SafetyLimits(allow_private=True)
        ) as client:
            await client.get(f"{shop.url}/private/anything.jpg", kind="image")

    with pytest.raises(RobotsDisallowedError):
        asyncio.run(go())
    with pytest.raises(FetchError):  # the parent class callers catch
        asyncio.run(go())
