"""Extraction: products and links out of the fixture shop's HTML (no network)."""

from __future__ import annotations

import pytest

from lookalike.catalog.crawl.css import Selectors
from lookalike.catalog.crawl.extract import classify, extract_listing, extract_product
from lookalike.catalog.crawl.listing import guess_next_page, page_number
from lookalike.catalog.crawl.options import derive_id
from lookalike.catalog.crawl.page import parse_srcset
from lookalike.catalog.crawl.values import parse_currency, parse_price
from lookalike.errors import CrawlError
from tests.fixtures.shop.server import SITE

BASE = "http://shop.test"


def _page(relative: str) -> str:
    return (SITE / relative).read_text(encoding="utf-8")


def test_json_ld_product_takes_the_zoom_rendition_of_each_image() -> None:
    url = f"{BASE}/product/linen-shirt.html?ref=list"
    p = extract_product(_page("product/linen-shirt.html"), url)
    assert p is not None
    # JSON-LD lists the 320 px renditions; the zoom links around the same <img>s are larger.
    assert p.images == (
        f"{BASE}/img/linen-shirt-1-large.jpg",
        f"{BASE}/img/linen-shirt-2-large.jpg",
    )
    assert (p.id, p.title, p.price, p.currency) == ("LS-100", "Linen shirt", 49.9, "EUR")
    assert (p.colour, p.category, p.brand) == ("white", "Shirts", "Acme")
    assert p.description == "A breezy linen shirt & more."  # tags and entities resolved
    assert p.url == f"{BASE}/product/linen-shirt.html"  # the canonical link, not the ?ref URL
    assert p.sources[0] == "json-ld" and p.structured


def test_json_ld_graph_image_objects_breadcrumbs_lazy_and_picture() -> None:
    p = extract_product(_page("product/wool-coat.html"), f"{BASE}/product/wool-coat.html")
    assert p is not None
    # ImageObject url + contentUrl; upgraded through data-srcset (lazy) and <picture><source>;
    # the SVG source is ignored; the broken JSON-LD block does not hide the good one.
    assert p.images == (f"{BASE}/img/wool-coat-1-large.jpg", f"{BASE}/img/wool-coat-2-large.jpg")
    assert p.id == "4006381333931"  # gtin13 given as a JSON number
    assert (p.price, p.currency) == (129.0, "GBP")  # AggregateOffer lowPrice
    assert p.colour == "grey, charcoal"
    assert p.category == "Coats"  # the breadcrumb before the product


def test_opengraph_only_page() -> None:
    p = extract_product(_page("product/canvas-bag.html"), f"{BASE}/product/canvas-bag.html")
    assert p is not None and p.sources[0] == "opengraph" and p.structured
    assert p.images == (f"{BASE}/img/canvas-bag-1-large.jpg", f"{BASE}/img/canvas-bag-2-large.jpg")
    assert (p.id, p.title, p.price, p.currency) == ("CB-7", "Canvas tote bag", 35.0, "USD")
    assert (p.colour, p.category) == ("natural", "Bags")
    assert p.description == "Sturdy canvas & leather handles."


def test_microdata_only_page() -> None:
    p = extract_product(_page("product/leather-boot.html"), f"{BASE}/product/leather-boot.html")
    assert p is not None and p.sources[0] == "microdata"
    assert p.images == (
        f"{BASE}/img/leather-boot-1-large.jpg",
        f"{BASE}/img/leather-boot-2-large.jpg",
    )
    assert (p.id, p.title, p.price, p.currency) == ("LB-42", "Leather boot", 89.5, "USD")
    # The nested Brand scope's `name` belongs to the brand, not to the product.
    assert (p.colour, p.brand, p.category) == ("brown", "Bootmakers", "Shoes")
    assert p.description == "Hand-stitched leather boot."


SELECTOR_PAGE = """<html><head><base href="/shop/"><title>Blue mug | Shop</title></head><body>
<h1>Blue mug</h1><span class="amount">CHF 1'250.50</span><div class="swatch" data-colour="blue"></div>
<div class="viewer"><img src="data:image/gif;base64,R0lGOD" data-src="mug-front.jpg"
  data-srcset="mug-front-400.jpg 1x, mug-front-800.jpg 2x">
<img src="javascript:alert(1)"><img src="mug-side.webp"></div>
<img src="/logo.png" class="logo"></body></html>"""


def test_css_selectors_when_the_page_has_no_structured_data() -> None:
    url = "http://shop.test/shop/mugs/blue"
    assert extract_product(SELECTOR_PAGE, url) is None  # the default selectors find no gallery
    custom = Selectors.from_mapping(
        {"images": ".viewer img", "price": ".amount", "colour": "[data-colour]"}
    )
    p = extract_product(SELECTOR_PAGE, url, custom)
    assert p is not None and p.sources == ("selectors",) and not p.structured
    # `<base href>` resolves the relative URLs; 2x beats 1x; data: and javascript: are dropped;
    # the logo outside the gallery is not a product image.
    assert p.images == (
        "http://shop.test/shop/mug-front-800.jpg",
        "http://shop.test/shop/mug-side.webp",
    )
    assert (p.title, p.price, p.currency, p.colour) == ("Blue mug", 1250.5, "CHF", "blue")


def test_bad_selectors_are_refused_with_the_field_named() -> None:
    with pytest.raises(CrawlError, match="images"):
        Selectors.from_mapping({"images": "a[["})
    with pytest.raises(CrawlError, match="unknown selector fields"):
        Selectors.from_mapping({"pictures": "img"})


def test_srcset_parsing() -> None:
    assert parse_srcset("a.jpg 300w, https://cdn/w_600,h_400/b.jpg 600w,c.jpg") == [
        ("a.jpg", 300.0, None),
        ("https://cdn/w_600,h_400/b.jpg", 600.0, None),  # a comma inside a URL stays
        ("c.jpg", None, None),
    ]
    assert parse_srcset(" x.jpg 1.5x , y.jpg 2x") == [("x.jpg", None, 1.5), ("y.jpg", None, 2.0)]
    assert parse_srcset("") == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (49.9, 49.9),
        ("49.90", 49.9),
        ("49,90 €", 49.9),
        ("$1,299.00", 1299.0),
        ("1.299,00 EUR", 1299.0),
        ("1 299", 1299.0),
        ("1,299", 1299.0),
        ("0,299", 0.299),
        ("CHF 1'250.50", 1250.5),
        ("from 12", 12.0),
        ("free", None),
        (True, None),
        (None, None),
    ],
)
def test_prices(text: object, value: float | None) -> None:
    assert parse_price(text) == value


def test_currencies() -> None:
    assert parse_currency("eur") == "EUR"
    assert parse_currency("49,90 €") == "EUR"
    assert parse_currency("£ 12") == "GBP"
    assert parse_currency("US$ 3") == "USD"
    assert parse_currency("twelve") is None


def test_listing_links_and_rel_next() -> None:
    listing = extract_listing(_page("shop/page-1.html"), f"{BASE}/shop/")
    assert listing.products == tuple(
        f"{BASE}{p}"
        for p in (
            "/product/linen-shirt.html?ref=list",
            "/product/wool-coat.html",
            "/product/canvas-bag.html",
            "/product/leather-boot.html",
            "/private/secret-dress.html",
        )
    )  # not the logo link, not "About us", not the pagination
    assert listing.next_pages == (f"{BASE}/shop/?page=2",)


def test_listing_numbered_pagination_without_rel_next() -> None:
    listing = extract_listing(_page("shop/page-2.html"), f"{BASE}/shop/?page=2")
    assert len(listing.products) == 3
    assert listing.next_pages == (f"{BASE}/shop/?page=3",)  # not ?page=1
    last = extract_listing(_page("shop/page-3.html"), f"{BASE}/shop/?page=3")
    assert last.next_pages == ()


def test_listing_from_json_ld_item_list_keeps_to_the_site() -> None:
    html = """<script type="application/ld+json">{"@type": "ItemList", "itemListElement": [
      {"@type": "ListItem", "position": 1, "url": "/p/one"},
      {"@type": "ListItem", "position": 2, "item": {"@id": "https://www.shop.test/p/two"}},
      {"@type": "ListItem", "position": 3, "url": "https://elsewhere.test/p/ad"}]}</script>"""
    listing = extract_listing(html, "https://shop.test/c/all")
    assert listing.products == ("https://shop.test/p/one", "https://www.shop.test/p/two")


def test_classify_pages() -> None:
    kind, product, _ = classify(
        _page("product/linen-shirt.html"), f"{BASE}/product/linen-shirt.html"
    )
    assert (
        kind == "product" and product is not None
    )  # its "related" link does not make it a listing
    kind, _, listing = classify(_page("shop/page-1.html"), f"{BASE}/shop/")
    assert kind == "listing" and len(listing.products) == 5
    kind, _, _ = classify(_page("js/index.html"), f"{BASE}/js/")
    assert kind == "none"  # everything is rendered by JavaScript


def test_page_numbers() -> None:
    assert page_number("http://s.test/c?sort=new&page=3") == ("page", 3)
    assert guess_next_page("http://s.test/c?sort=new&page=3") == "http://s.test/c?sort=new&page=4"
    assert guess_next_page("http://s.test/blog/page/2/") == "http://s.test/blog/page/3/"
    assert guess_next_page("http://s.test/c") is None


def test_derived_ids_are_readable_and_distinct() -> None:
    a = derive_id("https://shop.test/men/shirt.html")
    b = derive_id("https://shop.test/women/shirt.html")
    assert a.startswith("shirt-") and b.startswith("shirt-") and a != b
    assert derive_id("https://shop.test/product.php?id=42").startswith("product-42-")
    assert derive_id("https://shop.test/").startswith("item-")
    assert derive_id("https://shop.test/a") == derive_id("https://shop.test/a")
