"""IPv6 literals and the odd IPv4 forms (octal, hex, short, a single number) through
`lookalike crawl`: each such URL is checked like any other, refused when it is not public, and
skipped with a reason; the crawl finishes, and finishes again when rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lookalike.catalog.crawl.safety import check_url, host_key
from lookalike.errors import UnsafeURLError
from tests.fixtures.shop.cli import lookalike
from tests.fixtures.shop.server import ShopServer

PAGE = """<!doctype html><html><head><title>Odd hosts</title>
<script type="application/ld+json">
{{"@type": "Product", "name": "Odd hosts", "sku": "OH-1",
  "offers": {{"price": "5.00", "priceCurrency": "EUR"}},
  "image": ["/img/linen-shirt-1-large.jpg", "http://[2001:db8::1]/p.jpg",
            "http://0177.0.0.1:{port}/img/linen-shirt-2-large.jpg", "http://[fe80::1%25eth0]/z.jpg"]}}
</script></head><body><h1>Odd hosts</h1>
<img src="http://[2001:db8::1]:8080/q.jpg" width="600" height="600"></body></html>"""


def test_odd_hosts_are_canonical_before_they_are_checked() -> None:
    assert check_url("http://0177.0.0.1/x") == "http://127.0.0.1/x"  # octal
    assert check_url("http://0x7f.1/x") == "http://127.0.0.1/x"  # hex, short form
    assert check_url("http://2130706433/x") == "http://127.0.0.1/x"  # one number
    assert check_url("http://[2001:DB8:0::1]:8080/p") == "http://[2001:db8::1]:8080/p"
    assert host_key("http://[2001:db8::1]/p") == "http://[2001:db8::1]:80"
    for bad in ("http://256.1.1.1/", "http://09.0.0.1/", "http://1.2.3.4.5/", "http://a.12/"):
        with pytest.raises(UnsafeURLError, match="neither a host name nor an IPv4 address"):
            check_url(bad)
    with pytest.raises(UnsafeURLError, match="zone id"):
        check_url("http://[fe80::1%25eth0]/x")
    # Debian's Python 3.11.2 urlsplit refuses it itself ("Invalid IPv6 URL"); 3.11.7 does not
    with pytest.raises(UnsafeURLError, match="IPv6"):
        check_url("http://[::1]x/")


def _failures(run: object) -> dict[str, str]:
    assert "Traceback" not in run.stderr, run.stderr  # type: ignore[attr-defined]
    summary = json.loads(run.stdout)  # type: ignore[attr-defined]
    return {f["url"]: f["reason"] for f in summary["failures"]}


def test_crawl_skips_ipv6_literals_and_odd_ipv4_forms(tmp_path: Path) -> None:
    with ShopServer() as shop:
        port = shop.url.rsplit(":", 1)[1]
        shop.overrides["/product/odd-hosts.html"] = PAGE.format(port=port)
        urls = tmp_path / "urls.txt"
        urls.write_text(
            "http://[2001:db8::1]/p\n"
            f"http://0177.0.0.1:{port}/product/odd-hosts.html\n"
            "http://0x7f.0.0.1/a\n"
            "http://999.1.1.1/b\n"
            "http://xn--a.example/c\n"  # an IDNA name httpx cannot encode
        )
        out = tmp_path / "shop"
        # Without --allow-private every one of them is refused, by the address it really means.
        run = lookalike("crawl", str(urls), "-o", str(out), "--json", "--timeout", "1")
        assert run.returncode == 8, run.stderr  # nothing crawled: the usual exit code, no crash
        failures = _failures(run)
        assert "non-public address 2001:db8::1" in failures["http://[2001:db8::1]/p"]
        page = f"http://127.0.0.1:{port}/product/odd-hosts.html"
        assert "non-public address 127.0.0.1" in failures[page]
        assert "non-public address 127.0.0.1" in failures["http://127.0.0.1/a"]
        assert "neither a host name nor an IPv4" in failures["http://999.1.1.1/b"]
        assert "malformed URL" in failures["http://xn--a.example/c"]
        assert shop.hits() == []

        # Allowed: the page behind the octal address is crawled; its images on odd hosts are
        # fetched or skipped one by one, and a rerun finishes too (the page is unchanged then, so
        # its images are not tried again).
        urls.write_text(f"http://0177.0.0.1:{port}/product/odd-hosts.html\n")
        for rerun in (False, True):
            run = lookalike(
                "crawl", str(urls), "-o", str(out), "--json", "--allow-private",
                "--timeout", "1", "--rate", "50",
            )  # fmt: skip
            assert run.returncode == 0, run.stderr
            failures = _failures(run)
            item = json.loads((out / "catalogue.jsonl").read_text())
            assert item["id"] == "OH-1" and len(item["images"]) == 2  # shirt 1 and 2
            if rerun:
                assert failures == {} and json.loads(run.stdout)["products_unchanged"] == 1
            else:
                assert set(failures) == {"http://[2001:db8::1]/p.jpg"}, failures
                assert failures["http://[2001:db8::1]/p.jpg"].startswith("image of http://127.")
