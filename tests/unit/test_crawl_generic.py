"""The generic product reader on measured layouts (no browser), sitemaps, robots.txt `Sitemap:`
lines, "load more" buttons, and old prices in the selector layer."""

from __future__ import annotations

from lookalike.catalog.crawl.discover import has_load_more, is_sitemap_url, parse_sitemap
from lookalike.catalog.crawl.extract import extract_product
from lookalike.catalog.crawl.generic import product_of, read_product
from lookalike.catalog.crawl.layout import Ancestor, Box, Layout, MeasuredImage, MeasuredPrice
from lookalike.catalog.crawl.politeness import parse_robots

URL = "https://shop.example/p/bowl"
MAIN = Ancestor("main", "", "", True)
GALLERY = Ancestor("div", "media", "", False)
STRIP = Ancestor("section", "strip", "You may also like", False)
HEADER = Ancestor("header", "", "", False)
ASIDE_PROMO = Ancestor("div", "promo", "", False)
MODAL = Ancestor("div", "modal", "", False)


def _image(n: int, url: str, box: Box, chain: tuple[Ancestor, ...], **kw: object) -> MeasuredImage:
    values: dict[str, object] = {
        "n": n,
        "kind": "img",
        "url": url,
        "box": box,
        "natural": (1200, 1200),
        "visible": True,
        "alt": "",
        "hint": "",
        "chain": chain,
        "link": "",
    }
    values.update(kw)
    return MeasuredImage(**values)  # type: ignore[arg-type]


def _layout(images: list[MeasuredImage], prices: list[MeasuredPrice]) -> Layout:
    from lookalike.catalog.crawl.layout import Heading

    return Layout(
        title="Bowl | Shop",
        viewport=(1280, 900),
        headings=(Heading("Ceramic bowl", Box(700, 100, 400, 40), 32, True),),
        images=tuple(images),
        prices=tuple(prices),
    )


def _html(count: int) -> str:
    imgs = "".join(f'<img data-lookalike-image="{n}" src="/x{n}.jpg">' for n in range(count))
    return f"<html><body>{imgs}</body></html>"


def test_the_gallery_is_the_large_images_beside_the_title() -> None:
    g = (GALLERY, MAIN)
    images = [
        _image(0, "https://shop.example/logo.png", Box(0, 0, 200, 200), (HEADER,)),
        _image(1, "https://shop.example/a.jpg", Box(100, 100, 500, 500), g),
        _image(2, "https://shop.example/a-thumb.jpg", Box(100, 620, 80, 80), g),
        _image(3, "https://shop.example/b-thumb.jpg", Box(190, 620, 80, 80), g),
        _image(4, "https://shop.example/c-thumb.jpg", Box(280, 620, 80, 80), g, natural=(80, 80)),
        _image(5, "https://shop.example/hero.jpg", Box(0, 800, 1200, 200), g),
        _image(6, "https://shop.example/other.jpg", Box(0, 1500, 300, 300), (STRIP, MAIN)),
        _image(
            7,
            "https://shop.example/card.jpg",
            Box(0, 1900, 300, 300),
            g,
            link="https://shop.example/p/vase",
        ),
        _image(8, "https://shop.example/star.png", Box(700, 150, 160, 160), g, hint="rating"),
        _image(9, "https://shop.example/hidden.jpg", Box(0, 0, 0, 0), (MODAL, MAIN), visible=False),
        _image(10, "https://shop.example/promo.jpg", Box(0, 2500, 400, 400), (ASIDE_PROMO,)),
        _image(11, "https://shop.example/v.jpg", Box(0, 3000, 400, 400), g, link=URL + "?v=2"),
    ]
    # The thumbnails link to their large photo (a zoom link), except the third.
    html = (
        '<html><body><img data-lookalike-image="1" src="/a.jpg">'
        '<a href="/a-big.jpg"><img data-lookalike-image="2" src="/a-thumb.jpg"></a>'
        '<img data-lookalike-image="3" src="/b-thumb.jpg" srcset="/b-thumb.jpg 80w, /b.jpg 1200w">'
        '<img data-lookalike-image="4" src="/c-thumb.jpg"></body></html>'
    )
    found = read_product(_layout(images, []), html, URL)
    assert found.images == (
        "https://shop.example/a.jpg",
        "https://shop.example/a-big.jpg",
        "https://shop.example/b.jpg",
        "https://shop.example/v.jpg",  # a link to a variant of this very product
    )
    why = {v.url.rsplit("/", 1)[-1]: v.reason for v in found.verdicts if not v.kept}
    assert why["logo.png"] == "in the page's <header>"
    assert why["c-thumb.jpg"].startswith("too few pixels")
    assert why["hero.jpg"].startswith("banner-shaped")
    assert why["other.jpg"] == "in a recommendations section ('You may also like')"
    assert why["card.jpg"].startswith("a link to another page")
    assert why["star.png"] == "named 'rating' (not a product photo)"
    assert why["hidden.jpg"] == "not displayed"
    assert why["promo.jpg"] == "outside the section of the title and the largest images"


def test_the_price_nearest_the_title_not_the_old_one_nor_the_strips() -> None:
    def price(text: str, box: Box, **kw: object) -> MeasuredPrice:
        values: dict[str, object] = {"font": 16, "struck": False, "chain": (MAIN,)}
        values.update(kw)
        return MeasuredPrice(text, box, **values)  # type: ignore[arg-type]

    prices = [
        price("Free shipping from €50", Box(0, 10, 300, 20), chain=(HEADER,)),
        price("1.499,00 €", Box(700, 150, 100, 20), struck=True),
        price("ab 1.299,00 €", Box(820, 150, 120, 24), font=24),
        price("€ 19,90", Box(0, 1500, 100, 20), chain=(STRIP, MAIN)),
        price("€ 5,00", Box(700, 3000, 100, 20)),  # far below: not this product's
    ]
    found = read_product(_layout([], prices), _html(0), URL)
    assert found.price is not None and found.price.value == 1299.0
    assert found.price.source.startswith("a 'from' price, 'ab 1.299,00 €' near the title")
    assert found.currency is not None and found.currency.value == "EUR"
    assert found.title is not None and found.title.value == "Ceramic bowl"
    assert found.prices == 2  # the struck, header and strip ones are not counted


def test_title_falls_back_to_og_then_the_document_title() -> None:
    assert read_product(Layout(title="Blue vase – Shop"), "", URL).title.value == "Blue vase"  # type: ignore[union-attr]
    og = read_product(Layout(title="x", og_title="Green vase"), "", URL).title
    assert og is not None and (og.value, og.source) == ("Green vase", "og:title")


def test_generic_fills_only_what_structured_data_leaves_empty() -> None:
    html = (
        '<html><head><script type="application/ld+json">{"@type": "Product", "name": "Bowl", '
        '"offers": {"price": "12.00", "priceCurrency": "EUR"}}</script></head><body>'
        '<img data-lookalike-image="0" src="/a.jpg"></body></html>'
    )
    images = [_image(0, "https://shop.example/a.jpg", Box(100, 100, 500, 500), (GALLERY, MAIN))]
    prices = [MeasuredPrice("EUR 99.00", Box(700, 150, 100, 20), 16, False, (MAIN,))]
    data = product_of(html, URL, _layout(images, prices))
    assert data is not None
    assert (data.title, data.price, data.currency) == ("Bowl", 12.0, "EUR")  # JSON-LD's
    assert data.images == ("https://shop.example/a.jpg",) and data.sources[-1] == "generic"
    assert product_of(html, URL, None) == extract_product(html, URL)  # static: untouched


def test_selector_prices_skip_struck_old_prices() -> None:
    html = (
        '<h1>Mug</h1><p class="price"><del><span>£22.00</span></del> <ins>£18.00</ins></p>'
        '<div class="product-gallery"><img src="/m.jpg"></div>'
    )
    data = extract_product(html, URL)
    assert data is not None and (data.price, data.currency) == (18.0, "GBP")


def test_sitemaps_robots_lines_and_load_more_buttons() -> None:
    index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<sitemap><loc> https://shop.example/sitemap_products_1.xml?a=1&amp;b=2 </loc></sitemap>"
        "</sitemapindex>"
    )
    assert parse_sitemap(index) == (True, ["https://shop.example/sitemap_products_1.xml?a=1&b=2"])
    urlset = "<urlset><url><loc>https://shop.example/p/1</loc></url><url><loc></loc></url></urlset>"
    assert parse_sitemap(urlset) == (False, ["https://shop.example/p/1"])
    assert is_sitemap_url("https://shop.example/sitemap.xml.gz")
    assert not is_sitemap_url("https://shop.example/shop/")
    robots = parse_robots(
        "Sitemap: https://shop.example/sitemap.xml\nUser-agent: *\nDisallow: /x\n"
        "Sitemap: https://shop.example/more.xml\n"
    )
    assert robots.sitemaps == ("https://shop.example/sitemap.xml", "https://shop.example/more.xml")
    assert not robots.allowed("https://shop.example/x")
    assert has_load_more('<div><button type="button"> Load more </button></div>')
    assert has_load_more('<a href="#" class="btn">Mehr laden</a>')
    assert not has_load_more('<a href="/shop?page=2">Load more</a>')  # a page: followed as such
    assert not has_load_more("<button>Show more reviews</button>")


def test_photos_shown_small_are_taken_when_nothing_is_shown_larger() -> None:
    g = (GALLERY, MAIN)
    images = [
        _image(0, "https://shop.example/a.jpg", Box(100, 100, 120, 120), g),
        _image(1, "https://shop.example/b.jpg", Box(230, 100, 120, 120), g),
        _image(2, "https://shop.example/icon.png", Box(400, 100, 120, 120), g, natural=(64, 64)),
    ]
    found = read_product(_layout(images, []), _html(0), URL)
    assert found.images == ("https://shop.example/a.jpg", "https://shop.example/b.jpg")


def test_a_carousel_s_hidden_slides_are_taken_with_the_shown_one() -> None:
    slides = Ancestor("div", "slides", "", False)
    track = (Ancestor("li", "slide", "", False), slides, GALLERY, MAIN)
    images = [
        _image(0, "https://shop.example/a.jpg", Box(100, 100, 500, 500), track),
        _image(1, "https://shop.example/b.jpg", Box(0, 0, 0, 0), track, visible=False),
        _image(2, "https://shop.example/c.jpg", Box(0, 0, 0, 0), track, visible=False),
        _image(3, "https://shop.example/elsewhere.jpg", Box(0, 0, 0, 0), (HEADER,), visible=False),
        _image(4, "https://shop.example/modal.jpg", Box(0, 0, 0, 0), (ASIDE_PROMO,), visible=False),
    ]
    found = read_product(_layout(images, []), _html(0), URL)
    assert found.images == tuple(f"https://shop.example/{x}.jpg" for x in "abc")
    why = {v.url.rsplit("/", 1)[-1]: v.reason for v in found.verdicts}
    assert why["b.jpg"] == "a hidden slide beside the gallery's shown photo"
    assert why["modal.jpg"] == "not displayed"
