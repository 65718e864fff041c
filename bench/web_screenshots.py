"""Screenshots of the web page for the README (docs/img/), in Debian's Chromium via Playwright.

Run from the repository root as a module (it reuses the tests' live server, `tests/live_server.py`):

    python -m bench.web_screenshots --index IDX --catalogue-root ../shared/data/grocery \\
        --photo ../shared/data/grocery/val/Fruit/Apple/Granny-Smith/Granny-Smith_003.jpg

Takes: the results for PHOTO at desktop size (page-desktop.png) and at phone size, scrolled as the
page scrolls itself (page-phone.png); a drawing of a T-shirt, which a grocery index holds nothing
like (page-no-match.png). Saved as 256-colour PNGs to keep the repository small.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from lookalike.api.http import create_app
from lookalike.config import Settings
from lookalike.engine.core import Engine
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[1]

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def t_shirt(path: Path) -> Path:
    """A plain drawing of a striped T-shirt: nothing a grocery shop sells."""
    im = Image.new("RGB", (480, 480), "white")
    d = ImageDraw.Draw(im)
    body = [(150, 90), (200, 70), (280, 70), (330, 90), (420, 160), (370, 210), (340, 185),
            (340, 420), (140, 420), (140, 185), (110, 210), (60, 160)]  # fmt: skip
    d.polygon(body, fill=(40, 90, 170))
    for y in range(120, 420, 40):
        d.rectangle([140, y, 340, y + 14], fill=(240, 240, 240))
    d.ellipse([205, 55, 275, 100], fill="white")
    im.save(path, quality=92)
    return path


def save(png: bytes, dest: Path) -> None:
    im = Image.open(io.BytesIO(png)).convert("RGB")
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
    print(dest, dest.stat().st_size // 1024, "KB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--catalogue-root", type=Path, required=True)
    ap.add_argument("--photo", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shirt = t_shirt(args.out.parent / "t-shirt-drawing.jpg")
    chromium = os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium")
    from playwright.sync_api import sync_playwright

    settle = "() => !document.getElementById('status').classList.contains('busy')"
    loaded = (
        "() => [...document.querySelectorAll('.card img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    with (
        Engine(args.index, settings=Settings(index=args.index)) as engine,
        live_server(create_app(engine, catalogue_root=args.catalogue_root)) as url,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        for name, context in (
            ("page-desktop.png", {"viewport": {"width": 1280, "height": 860}}),
            (
                "page-phone.png",
                {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
            ),
        ):
            page = browser.new_context(reduced_motion="reduce", **context).new_page()
            page.goto(url + "/")
            page.wait_for_function("() => document.getElementById('index-info').textContent")
            with page.expect_response("**/api/search"):
                page.set_input_files("#file-input", str(args.photo))
            page.wait_for_function(settle)
            page.wait_for_function(loaded)
            page.wait_for_timeout(300)
            save(page.screenshot(), args.out / name)
            if name == "page-desktop.png":
                with page.expect_response("**/api/search"):
                    page.set_input_files("#file-input", str(shirt))
                page.wait_for_function(settle)
                page.wait_for_function(loaded)
                save(page.screenshot(), args.out / "page-no-match.png")
        browser.close()
    shirt.unlink()


if __name__ == "__main__":
    main()
