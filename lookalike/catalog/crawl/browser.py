"""Shops that build their pages with JavaScript: Playwright driving the system's Chromium.

- The browser is the system's Chromium (Debian's `chromium` package, `$LOOKALIKE_CHROMIUM`, or
  the path given); lookalike never downloads a browser.
- Chromium makes no network connection of its own: `--host-resolver-rules=MAP * ~NOTFOUND` leaves
  it unable to resolve any name or address, and every request a page makes is routed through
  `PoliteClient`, which answers it (robots.txt, rate limits, the address check, size caps all
  apply). Fonts, media, websockets and the like are refused (not needed to find product images);
  service workers are blocked (their requests would escape the routing).
- After the load event the page is scrolled a screen at a time; after each step it waits until
  no request has been in flight for `settle_ms`. Scrolling stops at the bottom once two looks in a
  row find nothing new (page height, images, loaded images, links), when a listing shows enough
  product links, after `max_scrolls` steps, or when `page_budget_s` is spent. So lazy images
  (IntersectionObserver, `loading=lazy`) load, and infinite-scroll listings grow. On a listing,
  a "load more" button is clicked when scrolling finds nothing new, as often as the goal allows.
- Then the page's layout is measured (`layout.MEASURE_JS`: titles, prices, images with their
  rendered and natural sizes) for the generic product reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lookalike.catalog.crawl.client import PoliteClient
from lookalike.catalog.crawl.discover import LOAD_MORE_WORDS
from lookalike.catalog.crawl.fetch import Page, ScrollGoal
from lookalike.catalog.crawl.layout import MAX_IMAGES, MAX_PRICES, MEASURE_JS, Layout, money_pattern
from lookalike.errors import FetchError, RobotsDisallowedError, UnsafeURLError

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright, Request, Route
    from playwright.async_api import Page as Tab  # a browser tab, not our `fetch.Page`

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # Chromium resolves nothing itself: every request must come through our routing.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
_REFUSED_TYPES = frozenset({"font", "media", "websocket", "manifest", "eventsource", "texttrack"})
# Headers Chromium sets that our client sets itself (or that would describe another transfer).
_DROP_REQUEST = frozenset(
    {"host", "user-agent", "content-length", "accept-encoding", "connection", "keep-alive"}
)
_DROP_RESPONSE = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)
_LOOK = """(sel) => {
  const imgs = Array.from(document.images);
  let wanted = 0;
  try { wanted = sel ? document.querySelectorAll(sel).length : 0; } catch (e) { wanted = -1; }
  return [
    document.documentElement.scrollHeight,
    imgs.length,
    imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
    document.querySelectorAll('a[href]').length,
    wanted,
    Math.ceil(window.scrollY + window.innerHeight),
  ];
}"""
# Scroll most of a screen, then wait two rendering frames: IntersectionObserver looks at the page
# only when a frame is drawn, and on a busy machine frames lag behind, so without the wait a fast
# scroll can pass an element before any frame saw it on screen (its photo would never load).
_TWO_FRAMES = """new Promise((done) => {
    const timer = setTimeout(done, 2000);
    requestAnimationFrame(() => requestAnimationFrame(() => { clearTimeout(timer); done(); }));
  })"""
_STEP = f"""async () => {{
  window.scrollBy(0, Math.max(200, Math.floor(window.innerHeight * 0.85)));
  await {_TWO_FRAMES};
}}"""
# The same wait before the first step: what a script added at the end of loading (a photo at the
# top of the page) is first looked at in a frame, and scrolling before that frame would leave
# the top of the page before any observer saw it there.
_FRAMES = f"async () => {{ await {_TWO_FRAMES}; }}"

# A "load more" button: clicked when scrolling finds nothing new (links with a real href are
# pages, followed as such). Returns the button's text, or "" when there is none to click.
_LOAD_MORE = """([pattern, selector]) => {
  const words = new RegExp(pattern, 'i');
  let extra = [];
  try { extra = selector ? Array.from(document.querySelectorAll(selector)) : []; } catch (e) {}
  const all = Array.from(document.querySelectorAll(
    'button, a, [role=button], input[type=button], input[type=submit]'));
  for (const el of extra.concat(all)) {
    const t = (el.innerText || el.value || el.getAttribute('aria-label') || '')
      .replace(/\\s+/g, ' ').trim();
    if (!extra.includes(el) && (!t || t.length > 40 || !words.test(t))) continue;
    const href = el.tagName === 'A' ? (el.getAttribute('href') || '') : '';
    if (href && !href.startsWith('#') && !href.startsWith('javascript:')) continue;
    if (el.disabled || el.getAttribute('aria-disabled') === 'true') continue;
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    if (!r.width || !r.height || s.visibility === 'hidden' || s.display === 'none') continue;
    el.scrollIntoView({block: 'center'});
    el.click();
    return t || el.tagName;
  }
  return '';
}"""


class BrowserUnavailableError(FetchError):
    """No usable Chromium (not installed, or it failed to start)."""


@dataclass(frozen=True)
class BrowserOptions:
    """How pages are rendered.

    executable: Chromium to drive (default: `$LOOKALIKE_CHROMIUM`, else `chromium` on PATH).
    tabs: pages rendered at once.
    settle_ms: quiet time (no request in flight) that ends a wait, in milliseconds.
    max_scrolls: scroll steps per page at most.
    page_budget_s: wall-clock time one page may take, load and scrolling included, in seconds.
    viewport: window size in CSS pixels (width, height).
    """

    executable: str | None = None
    tabs: int = 2
    settle_ms: int = 400
    max_scrolls: int = 60
    page_budget_s: float = 60.0
    viewport: tuple[int, int] = (1280, 900)


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium executable to use; BrowserUnavailableError naming what to install if none."""
    from lookalike.config import CrawlConfig

    for candidate in (explicit, CrawlConfig().chromium):
        if candidate:
            path = shutil.which(candidate) or candidate
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            raise BrowserUnavailableError(f"Chromium not found or not executable: {candidate}")
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailableError(
        "no Chromium found: install the system's package (Debian/Ubuntu: apt install chromium) "
        "or set LOOKALIKE_CHROMIUM; lookalike never downloads a browser"
    )


@dataclass
class _Traffic:
    """Requests of one page: how many are in flight, when that last changed, what was refused."""

    inflight: int = 0
    last_change: float = field(default_factory=time.monotonic)
    document_error: FetchError | None = None

    def begin(self) -> None:
        self.inflight += 1
        self.last_change = time.monotonic()

    def end(self) -> None:
        self.inflight -= 1
        self.last_change = time.monotonic()


class BrowserFetcher:
    """Renders pages in Chromium (see the module docstring). Started on first use."""

    def __init__(
        self,
        client: PoliteClient,
        options: BrowserOptions | None = None,
        *,
        local_images: Callable[[str], tuple[bytes, str] | None] | None = None,
    ) -> None:
        """local_images: url -> (bytes, content type) of an image already saved, answered from
        disk so that re-rendering a known page does not download its photos again."""
        self.client = client
        self.options = options or BrowserOptions()
        self.local_images = local_images
        self.pages_opened = 0
        self._tabs = asyncio.Semaphore(max(1, self.options.tabs))
        self._start_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._failed: BrowserUnavailableError | None = None

    async def _start(self) -> BrowserContext:
        async with self._start_lock:
            if self._failed is not None:
                raise self._failed
            if self._context is not None:
                return self._context
            try:
                executable = find_chromium(self.options.executable)
                from playwright.async_api import async_playwright

                self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
                )
                width, height = self.options.viewport
                self._context = await self._browser.new_context(
                    user_agent=self.client.politeness.user_agent,
                    viewport={"width": width, "height": height},
                    service_workers="block",
                    accept_downloads=False,
                )
            except BrowserUnavailableError as exc:
                self._failed = exc
                raise
            except Exception as exc:  # Playwright's errors: a missing library, a crash at start
                self._failed = BrowserUnavailableError(f"Chromium failed to start: {exc}")
                await self.aclose()
                raise self._failed from None
            return self._context

    async def aclose(self) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                with contextlib.suppress(Exception):  # already gone with the browser
                    await closer.close()
        if self._playwright is not None:
            with contextlib.suppress(Exception):  # after Ctrl-C its driver may be gone already
                await self._playwright.stop()
        self._context = self._browser = self._playwright = None

    async def fetch(self, url: str, *, scroll_for: ScrollGoal | None = None) -> Page:
        """Render `url`, scroll it, and return the DOM as HTML (the browser always fetches the
        page, never conditionally; its static copy from this run is re-used when there)."""
        context = await self._start()
        budget = self.options.page_budget_s
        async with self._tabs:
            page = await context.new_page()
            traffic = _Traffic()

            async def route(route: Route) -> None:
                await self._route(route, traffic)

            try:
                await page.route("**/*", route)
                return await asyncio.wait_for(
                    self._render(page, url, traffic, scroll_for), timeout=budget + 5
                )
            except TimeoutError:
                raise FetchError(f"browser: the page did not settle within {budget:g} s") from None
            finally:
                with contextlib.suppress(Exception):
                    await page.close()
                self.pages_opened += 1

    async def _render(
        self, page: Tab, url: str, traffic: _Traffic, goal: ScrollGoal | None
    ) -> Page:
        from playwright.async_api import Error as PlaywrightError

        opts = self.options
        deadline = time.monotonic() + opts.page_budget_s
        try:
            response = await page.goto(url, wait_until="load", timeout=opts.page_budget_s * 1000)
        except PlaywrightError as exc:
            if traffic.document_error is not None:
                raise traffic.document_error from None
            raise FetchError(f"browser: {str(exc).splitlines()[0]}") from None
        if response is None:
            raise FetchError("browser: no response for the page")
        if response.status >= 400:
            raise FetchError(f"HTTP {response.status}", status=response.status)
        try:
            await self._settle(traffic, deadline)
            clicks = await self._scroll(page, traffic, deadline, goal)
            layout = await self._measure(page)
            html = await page.content()
        except PlaywrightError as exc:
            raise FetchError(f"browser: {str(exc).splitlines()[0]}") from None
        return Page(page.url, html, response.status, rendered=True, layout=layout, load_more=clicks)

    async def _measure(self, page: Tab) -> Layout | None:
        """The page's layout (see `layout`); None when the page's scripts broke the measuring."""
        from playwright.async_api import Error as PlaywrightError

        args = [money_pattern(), MAX_IMAGES, MAX_PRICES]  # the price pattern, the caps
        try:
            raw = await asyncio.wait_for(page.evaluate(MEASURE_JS, args), timeout=15)
        except (PlaywrightError, TimeoutError):
            return None
        return Layout.from_json(raw)

    async def _settle(self, traffic: _Traffic, deadline: float) -> None:
        """Wait until no request has been in flight for `settle_ms` (at least that long)."""
        quiet = self.options.settle_ms / 1000
        traffic.last_change = max(traffic.last_change, time.monotonic())
        while time.monotonic() < deadline:
            if traffic.inflight == 0 and time.monotonic() - traffic.last_change >= quiet:
                return
            await asyncio.sleep(0.05)

    async def _scroll(
        self, page: Tab, traffic: _Traffic, deadline: float, goal: ScrollGoal | None
    ) -> int:
        """Scroll (see the module docstring); the number of "load more" buttons clicked."""
        selector = goal.selector if goal else ""
        previous: list[int] | None = None
        unchanged = clicks = 0
        await page.evaluate(_FRAMES)
        await self._settle(traffic, deadline)
        for _ in range(self.options.max_scrolls + 1):
            height, images, loaded, links, wanted, bottom = await page.evaluate(_LOOK, selector)
            if goal is not None and wanted >= goal.count:
                return clicks  # enough products: do not make the shop load more
            now = [height, images, loaded, links, wanted]
            if bottom >= height - 2:
                unchanged = unchanged + 1 if now == previous else 0
                if unchanged >= 2:
                    if goal is None or clicks >= goal.load_more:
                        return clicks
                    if not await page.evaluate(_LOAD_MORE, [LOAD_MORE_WORDS, goal.button]):
                        return clicks
                    clicks += 1
                    unchanged = 0
            previous = now
            if time.monotonic() >= deadline:
                return clicks
            await page.evaluate(_STEP)
            await self._settle(traffic, deadline)
        return clicks

    async def _route(self, route: Route, traffic: _Traffic) -> None:
        request = route.request
        if request.resource_type in _REFUSED_TYPES:
            await _quietly(route.abort("blockedbyclient"))
            return
        traffic.begin()
        main_document = _is_main_document(request)
        try:
            local = (
                self.local_images(request.url)
                if self.local_images and request.resource_type == "image"
                else None
            )
            if local is not None:
                body, kind = local
                await _quietly(route.fulfill(status=200, headers={"content-type": kind}, body=body))
                return
            answer = None
            if request.method == "GET":
                answer = self.client.recall(request.url)
            if answer is None:
                headers = {
                    k: v
                    for k, v in (await request.all_headers()).items()
                    if k.lower() not in _DROP_REQUEST and not k.startswith(":")
                }
                answer = await self.client.get(
                    request.url,
                    kind="page" if main_document else "asset",
                    method=request.method,
                    headers=headers,
                    content=request.post_data_buffer,
                    follow_redirects=False,  # the browser follows, so relative URLs stay right
                )
                if request.method == "GET":
                    self.client.remember(request.url, answer)
            headers = {}
            for name, value in answer.header_list:
                if name in _DROP_RESPONSE:
                    continue
                # Playwright takes repeated Set-Cookie headers joined by newlines.
                headers[name] = f"{headers[name]}\n{value}" if name in headers else value
            await _quietly(route.fulfill(status=answer.status, headers=headers, body=answer.body))
        except FetchError as exc:
            if main_document:
                traffic.document_error = exc
            refused = isinstance(exc, UnsafeURLError | RobotsDisallowedError)
            await _quietly(route.abort("blockedbyclient" if refused else "failed"))
        except Exception:
            await _quietly(route.abort("failed"))
        finally:
            traffic.end()


def _is_main_document(request: Request) -> bool:
    try:
        return bool(request.is_navigation_request()) and request.frame.parent_frame is None
    except Exception:  # requests without a frame (workers) are never the page itself
        return False


async def _quietly(action: Awaitable[None]) -> None:
    """Await a route action; the page may have been closed meanwhile, which is fine."""
    with contextlib.suppress(Exception):
        await action
