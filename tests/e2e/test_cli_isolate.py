"""`lookalike isolate` through the real command (a subprocess) on scikit-image's photos, with the
real YOLOX-Nano, U^2-NetP and PAN models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.api.cli", "isolate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=300,
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, model_settings: Settings) -> dict[str, Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name in ("coffee", "astronaut"):
        out[name] = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(out[name], quality=95)
    return out


def test_the_cup_is_cut_out_and_the_debug_picture_shows_it(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    out, debug = tmp_path / "cup.png", tmp_path / "debug.png"
    run = _cli(
        str(photos["coffee"]), "-o", str(out), "--labels", "cup", "--debug", str(debug), "--json"
    )
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["object"]["label"] == "cup" and info["object"]["score"] > 0.6
    assert {d["label"] for d in info["detections"]} >= {"cup"}
    cut = Image.open(out)
    assert cut.mode == "RGBA" and cut.size == tuple(info["size"])
    alpha = np.asarray(cut)[..., 3]
    h, w = alpha.shape
    assert alpha[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].min() > 200
    assert alpha[:5, :5].max() < 30 and alpha[-5:, -5:].max() < 30
    # The debug picture is the photo's size, and differs from it where boxes and mask are drawn.
    picture = np.asarray(Image.open(debug).convert("RGB"), dtype=np.int16)
    photo = np.asarray(Image.open(photos["coffee"]).convert("RGB"), dtype=np.int16)
    assert picture.shape == photo.shape
    x1, y1 = (round(v) for v in info["object"]["box"][:2])
    assert picture[y1 + 1, x1 + 30].tolist() != photo[y1 + 1, x1 + 30].tolist()  # box outline
    assert np.abs(picture - photo).mean() > 5


def test_garment_of_the_astronaut_on_white_and_a_user_box(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "suit.jpg"
    run = _cli(
        str(photos["astronaut"]), "-o", str(out), "--isolate", "garment", "--garment", "all",
        "--background", "white", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["object"]["label"] == "person" and info["coverage"] > 0.2
    suit = Image.open(out)
    assert suit.mode == "RGB"
    top_left = np.asarray(suit)[:5, :5]
    assert top_left.min() > 240  # the background became white

    boxed = tmp_path / "box.png"
    run = _cli(str(photos["astronaut"]), "-o", str(boxed), "--box", "300,0,520,300", "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["object"]["label"] == "box"
    assert info["object"]["box"] == [300.0, 0.0, 512.0, 300.0]  # clipped to the 512 px photo
    assert info["detections"] == []  # a user box skips detection


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box", "900,0,1000,10"], "no area"),
        (["--box", "1,2,3"], "four numbers"),
        (["--isolate", "magic"], "--isolate"),
        (["--labels", "spaceship"], "unknown label"),
    ],
)
def test_bad_requests_fail_with_a_clear_message_and_write_nothing(
    photos: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "never.png"
    run = _cli(str(photos["coffee"]), "-o", str(out), *args)
    assert run.returncode != 0 and message in run.stderr.replace("\n", " ")
    assert "Traceback" not in run.stderr and not out.exists()


def test_a_missing_photo_is_a_clear_error(tmp_path: Path) -> None:
    run = _cli(str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "x.png"))
    assert run.returncode != 0 and "Traceback" not in run.stderr
