"""What a rendered page looks like: measured in Chromium after scrolling, read by `generic`.

The browser runs `MEASURE_JS` once a page has settled. It measures and reports, and decides
nothing (the decisions are Python's, in `generic`, where they can be tested and explained):

- the title candidates: visible `<h1>` elements (text, box, font size), `og:title` and the
  document title;
- the price candidates: the smallest visible elements whose text (40 characters at most) holds a
  number next to a currency symbol or code, with their box, font size and whether they are
  struck through (an old price);
- the image candidates: every `<img>` (its rendered box and natural size) and every element with
  a CSS `background-image: url(...)` (natural size read from the loaded picture), each with the
  chain of its ancestors (tag, class / id / role / aria-label, the last heading of that section
  before the element, whether it contains the title) and the link it sits in.

Each image element gets a `data-lookalike-image="N"` attribute, so the Python side can find it in
the rendered HTML and read its renditions (`srcset`, zoom links ...) with `extract.renditions`.
Everything a page returns is untrusted data: `Layout.from_json` reads it defensively and caps its
size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_IMAGES = 400
MAX_PRICES = 200
MARK = "data-lookalike-image"

MEASURE_JS = """async ([moneySource, maxImages, maxPrices]) => {
  const body = document.body;
  if (!body) return null;
  const sx = window.scrollX, sy = window.scrollY;
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return [Math.round(r.left + sx), Math.round(r.top + sy), Math.round(r.width),
            Math.round(r.height)];
  };
  const visible = (el) => {
    const s = getComputedStyle(el);
    if (s.display === 'none' || s.visibility === 'hidden' || Number(s.opacity) === 0) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const text = (el, n) => (el.textContent || '').replace(/\\s+/g, ' ').trim().slice(0, n);
  const h1s = Array.from(document.querySelectorAll('h1')).filter(visible);
  const main = h1s.length ? h1s.reduce((a, b) =>
    parseFloat(getComputedStyle(b).fontSize) > parseFloat(getComputedStyle(a).fontSize) ? b : a)
    : null;
  const hint = (el) => [el.id, typeof el.className === 'string' ? el.className : '',
    el.getAttribute('role') || '', el.getAttribute('aria-label') || '',
    el.getAttribute('data-section-type') || ''].join(' ').replace(/\\s+/g, ' ').trim()
    .slice(0, 160);
  // The heading of section `a` as seen from `el`: the last heading in `a` before `el` (a strip's
  // heading precedes its cards; a heading after the gallery in the same column is not its own).
  const headingOf = (a, el) => {
    if (main && a.contains(main)) return '';
    let last = null;
    for (const h of a.querySelectorAll('h2, h3, h4, h5, h6, [role=heading]')) {
      if (!(h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING)) break;
      last = h;
    }
    return last ? text(last, 80) : '';
  };
  const chain = (el) => {
    const out = [];
    for (let a = el.parentElement; a && a !== document.documentElement && out.length < 24;
         a = a.parentElement) {
      out.push([a.tagName.toLowerCase(), hint(a), headingOf(a, el),
                !!(main && a.contains(main))]);
    }
    return out;
  };
  const linkOf = (el) => { const a = el.closest('a[href]'); return a ? a.href : ''; };

  // Marks the page set itself would mislead the Python side: remove them first.
  for (const el of Array.from(document.querySelectorAll('[data-lookalike-image]'))) {
    el.removeAttribute('data-lookalike-image');
  }
  // One pass in document order, so `n` is page order for <img> and backgrounds alike.
  const images = [];
  const waits = [];
  let n = 0;
  for (const el of Array.from(body.querySelectorAll('*'))) {
    if (images.length >= maxImages) break;
    let entry = null;
    if (el.tagName === 'IMG') {
      entry = {kind: 'img', url: el.currentSrc || el.src || '',
               natural: [el.naturalWidth, el.naturalHeight], alt: (el.alt || '').slice(0, 120)};
    } else {
      const m = (getComputedStyle(el).backgroundImage || '').match(/url\\(["']?([^"')]+)["']?\\)/);
      if (!m) continue;
      entry = {kind: 'background', url: new URL(m[1], document.baseURI).href, natural: [0, 0],
               alt: (el.getAttribute('aria-label') || el.getAttribute('title') || '')
                 .slice(0, 120)};
      const probe = new Image();
      probe.src = entry.url;
      const target = entry;
      waits.push(Promise.race([
        probe.decode().then(
          () => { target.natural = [probe.naturalWidth, probe.naturalHeight]; }, () => {}),
        new Promise((done) => setTimeout(done, 3000)),
      ]));
    }
    el.setAttribute('data-lookalike-image', String(n));
    Object.assign(entry, {n: n++, box: box(el), visible: visible(el), hint: hint(el),
                          chain: chain(el), link: linkOf(el)});
    images.push(entry);
  }
  await Promise.all(waits);

  const money = new RegExp(moneySource, 'i');
  const prices = [];
  // From each text node holding a digit, the smallest element around it (4 levels up at most)
  // whose short text is a price, a currency symbol in its own <span> included. Walking text
  // nodes, not elements, keeps a large page cheap.
  const skip = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'OPTION', 'TEXTAREA']);
  const seen = new Set();
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node && prices.length < maxPrices;
       node = walker.nextNode()) {
    if (!/\\d/.test(node.nodeValue || '')) continue;
    let found = null;
    let el = node.parentElement;
    for (let up = 0; el && el !== body && up < 4; up++, el = el.parentElement) {
      if (skip.has(el.tagName) || (el.textContent || '').length > 400) break;
      const t = text(el, 81);
      if (t.length > 40) break;
      if (money.test(t)) { found = el; break; }
    }
    if (!found || seen.has(found)) continue;
    seen.add(found);
    if (!visible(found)) continue;
    let struck = false;
    for (let a = found; a && a !== body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if ((s.textDecorationLine || '').includes('line-through') || a.tagName === 'DEL' ||
          a.tagName === 'S') { struck = true; break; }
    }
    prices.push({text: text(found, 81), box: box(found), struck: struck, chain: chain(found),
                 font: parseFloat(getComputedStyle(found).fontSize) || 0});
  }
  const og = document.querySelector('meta[property="og:title"]');
  return {
    title: document.title || '',
    og_title: og ? (og.getAttribute('content') || '') : '',
    viewport: [window.innerWidth, window.innerHeight],
    headings: h1s.map((h) => ({text: text(h, 500), box: box(h),
      font: parseFloat(getComputedStyle(h).fontSize) || 0, main: h === main})),
    images: images,
    prices: prices,
  };
}"""


@dataclass(frozen=True)
class Box:
    """A rectangle in CSS pixels, in document coordinates (scrolling does not move it)."""

    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def right(self) -> float:
        return self.x + self.w

    def gap(self, other: Box) -> float:
        """Distance between the two rectangles (0 when they touch or overlap)."""
        dx = max(0.0, other.x - self.right, self.x - other.right)
        dy = max(0.0, other.y - self.bottom, self.y - other.bottom)
        return math.hypot(dx, dy)

    def __str__(self) -> str:
        return f"{self.w:.0f}x{self.h:.0f} at ({self.x:.0f}, {self.y:.0f})"


@dataclass(frozen=True)
class Ancestor:
    """One ancestor of an element: tag, hint (id, class, role, aria-label), the heading of the
    section it is (when it does not contain the title), and whether it contains the title."""

    tag: str
    hint: str
    heading: str
    has_title: bool


@dataclass(frozen=True)
class Heading:
    text: str
    box: Box
    font: float
    main: bool


@dataclass(frozen=True)
class MeasuredImage:
    """An `<img>` or a CSS background. `n` is its `data-lookalike-image` mark; `url` the
    rendition the browser shows; `natural` its pixel size (0 x 0 when not loaded)."""

    n: int
    kind: str
    url: str
    box: Box
    natural: tuple[int, int]
    visible: bool
    alt: str
    hint: str
    chain: tuple[Ancestor, ...]
    link: str


@dataclass(frozen=True)
class MeasuredPrice:
    text: str
    box: Box
    font: float
    struck: bool
    chain: tuple[Ancestor, ...]


@dataclass(frozen=True)
class Layout:
    """A rendered page as `MEASURE_JS` saw it (see the module docstring)."""

    title: str = ""
    og_title: str = ""
    viewport: tuple[int, int] = (1280, 900)
    headings: tuple[Heading, ...] = ()
    images: tuple[MeasuredImage, ...] = ()
    prices: tuple[MeasuredPrice, ...] = ()

    @property
    def main_heading(self) -> Heading | None:
        return next((h for h in self.headings if h.main), None)

    @classmethod
    def from_json(cls, data: object) -> Layout | None:
        """The layout in `data` (what `MEASURE_JS` returned), or None when it is not one."""
        if not isinstance(data, dict):
            return None
        viewport = _pair(data.get("viewport")) or (1280, 900)
        return cls(
            title=_str(data.get("title"), 500),
            og_title=_str(data.get("og_title"), 500),
            viewport=(max(1, viewport[0]), max(1, viewport[1])),
            headings=tuple(
                Heading(
                    _str(h.get("text"), 500),
                    _box(h.get("box")),
                    _num(h.get("font")),
                    h.get("main") is True,
                )
                for h in _dicts(data.get("headings"), 50)
            ),
            images=tuple(
                MeasuredImage(
                    n=int(_num(i.get("n"))),
                    kind="background" if i.get("kind") == "background" else "img",
                    url=_str(i.get("url"), 4000),
                    box=_box(i.get("box")),
                    natural=_pair(i.get("natural")) or (0, 0),
                    visible=i.get("visible") is True,
                    alt=_str(i.get("alt"), 120),
                    hint=_str(i.get("hint"), 160),
                    chain=_chain(i.get("chain")),
                    link=_str(i.get("link"), 4000),
                )
                for i in _dicts(data.get("images"), MAX_IMAGES)
            ),
            prices=tuple(
                MeasuredPrice(
                    _str(p.get("text"), 80),
                    _box(p.get("box")),
                    _num(p.get("font")),
                    p.get("struck") is True,
                    _chain(p.get("chain")),
                )
                for p in _dicts(data.get("prices"), MAX_PRICES)
            ),
        )


def money_pattern() -> str:
    """A regular expression (valid in Python and JavaScript) for a number next to a currency
    symbol or ISO code: `EUR 13.50`, `13,50 €`, `$1,299`, `from £9`."""
    from lookalike.catalog.crawl.values import CURRENCY_CODES

    codes = "|".join(sorted(CURRENCY_CODES))
    symbol = "[\u20ac\u00a3$\u00a5\u20b9\u20a9\u20ba]"
    return (
        rf"(?:{symbol}|\b(?:{codes})\b)\s*\d"
        rf"|\d[\d.,'\s\u00a0\u202f]*\s*(?:{symbol}|z\u0142|kr\b|\b(?:{codes})\b)"
    )


def _dicts(value: object, cap: int) -> list[dict[str, Any]]:
    return [v for v in value[:cap] if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: object, cap: int) -> str:
    return value[:cap] if isinstance(value, str) else ""


def _num(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def _pair(value: object) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2:
        return int(max(0.0, _num(value[0]))), int(max(0.0, _num(value[1])))
    return None


def _box(value: object) -> Box:
    if isinstance(value, list) and len(value) == 4:
        x, y, w, h = (_num(v) for v in value)
        return Box(x, y, max(0.0, w), max(0.0, h))
    return Box()


def _chain(value: object) -> tuple[Ancestor, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        Ancestor(_str(a[0], 20), _str(a[1], 160), _str(a[2], 80), a[3] is True)
        for a in value[:24]
        if isinstance(a, list) and len(a) == 4
    )
