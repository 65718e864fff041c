"""Isolation: boxes (clipped or rejected with a typed error), cut-outs on hand-made masks, and the
real U^2-NetP / PAN masks on scikit-image's bundled photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import LookalikeError, QueryError
from lookalike.models.store import ModelStore
from lookalike.pipeline.isolate import Cutout, clip_box, cut_out, expand_box, parse_box
from lookalike.types import Box

# --- boxes ---------------------------------------------------------------------------------------


def test_a_box_partly_outside_the_photo_is_clipped() -> None:
    assert clip_box(Box(-10, -5, 50, 500), (100, 80)) == Box(0, 0, 50, 80)
    assert clip_box((20.5, 10, 99.5, 70), (100, 80)) == Box(20.5, 10, 99.5, 70)


def test_an_inverted_box_is_put_in_order() -> None:
    assert clip_box((60, 70, 10, 20), (100, 80)) == Box(10, 20, 60, 70)


@pytest.mark.parametrize(
    "box",
    [
        (200, 10, 300, 50),  # wholly right of the photo
        (-50, -50, -1, -1),  # wholly above-left
        (10, 10, 10, 60),  # zero width
        (10, 30, 60, 30),  # zero height
        (10, 10, 11, 60),  # under the 2 px minimum
        (0, 0, math.nan, 10),
        (0, 0, math.inf, 10),
    ],
)
def test_a_box_with_no_area_in_the_photo_is_a_query_error(box: tuple[float, ...]) -> None:
    with pytest.raises(QueryError, match="box"):
        clip_box(box, (100, 80))


def test_a_box_that_is_not_four_numbers_is_a_query_error() -> None:
    with pytest.raises(QueryError, match="four numbers"):
        clip_box((1, 2, 3), (100, 80))
    with pytest.raises(QueryError, match="four numbers"):
        clip_box(("a", 2, 3, 4), (100, 80))  # type: ignore[arg-type]
    assert parse_box("1, 2,3 4") == Box(1, 2, 3, 4)
    for text in ("1,2,3", "1,2,3,x", ""):
        with pytest.raises(QueryError, match="--box"):
            parse_box(text)
    assert issubclass(QueryError, LookalikeError)


def test_expand_box_grows_and_stays_inside() -> None:
    assert expand_box(Box(10, 10, 30, 50), 0.5, (40, 60)) == Box(0, 0, 40, 60)
    assert expand_box(Box(10, 10, 30, 50), 0.1, (100, 100)) == Box(8, 6, 32, 54)


def test_cut_out_crops_to_the_mask_with_a_margin_and_keeps_alpha() -> None:
    image = Image.new("RGB", (100, 80), (0, 0, 255))
    alpha = np.zeros((80, 100), np.float32)
    alpha[20:40, 30:70] = 1.0  # 40 x 20 object
    cut = cut_out(image, alpha, Box(0, 0, 100, 80), margin=0.1)
    # margin 0.1 of the longer side (40) = 4 px each side
    assert cut.image.mode == "RGBA" and cut.image.size == (48, 28)
    assert cut.box == Box(26, 16, 74, 44)
    a = np.asarray(cut.image)[..., 3]
    assert a[0, 0] == 0 and a[14, 24] == 255
    assert cut.coverage == pytest.approx(800 / 8000)
    flat = np.asarray(cut.flatten((255, 255, 255)))
    assert flat[0, 0].tolist() == [255, 255, 255] and flat[14, 24].tolist() == [0, 0, 255]
    padded = cut_out(image, alpha, Box(0, 0, 100, 80), margin=0.0, aspect=1.0)
    assert padded.image.size == (40, 40)  # object centred, padded with transparency


def test_cut_out_of_an_empty_mask_has_zero_coverage_and_a_wrong_mask_is_refused() -> None:
    image = Image.new("RGB", (50, 40))
    empty = cut_out(image, np.zeros((40, 50), np.float32), Box(0, 0, 50, 40))
    assert isinstance(empty, Cutout) and empty.coverage == 0.0
    with pytest.raises(ValueError, match="alpha"):
        cut_out(image, np.zeros((10, 10), np.float32), Box(0, 0, 50, 40))


# --- real masks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stages(model_store: ModelStore) -> tuple[object, object]:
    from lookalike.pipeline.detect import YoloxDetector
    from lookalike.pipeline.isolate import Isolator

    return YoloxDetector.from_store(model_store), Isolator.from_store(
        model_store, ("salient", "garment")
    )


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def _best(detector: object, image: Image.Image, label: str) -> Box:
    from lookalike.pipeline.detect import most_relevant

    found = most_relevant(detector.detect(image), image.size, {label})  # type: ignore[attr-defined]
    assert found is not None, f"no {label} found"
    return found.box


@pytest.mark.e2e
def test_the_cup_cut_out_covers_the_cup_and_not_the_corners(stages: tuple) -> None:
    detector, isolator = stages
    coffee = _photo("coffee")
    (cut,) = isolator.salient(coffee, [_best(detector, coffee, "cup")])
    alpha = np.asarray(cut.image)[..., 3].astype(np.float32) / 255
    h, w = alpha.shape
    assert 0.2 < cut.coverage < 0.95
    # The cup is the middle of its cut-out; the table is in the corners.
    assert alpha[h * 2 // 5 : h * 3 // 5, w * 2 // 5 : w * 3 // 5].mean() > 0.9
    for corner in (alpha[:8, :8], alpha[:8, -8:], alpha[-8:, :8], alpha[-8:, -8:]):
        assert corner.mean() < 0.1
    # The cut-out shows the cup's region of the photo, not the whole photo.
    assert cut.box.x1 > 100 and cut.box.x2 < 500
    flat = np.asarray(cut.flatten((255, 255, 255)))
    assert flat[:4, :4].min() == 255  # background replaced by the colour asked for


@pytest.mark.e2e
def test_garment_isolation_keeps_the_suit_and_removes_face_hair_and_background(
    stages: tuple,
) -> None:
    detector, isolator = stages
    image = _photo("astronaut")
    person = _best(detector, image, "person")
    parts = isolator.garment_parts(image, person, "all")
    ox, oy = math.floor(parts.person.x1), math.floor(parts.person.y1)

    def alpha(x: int, y: int) -> float:
        return float(parts.alpha[y - oy, x - ox])

    assert alpha(120, 340) > 0.9  # the orange suit, chest
    assert alpha(80, 290) > 0.9  # the suit, left shoulder
    assert alpha(226, 110) == 0.0  # her face (skin)
    assert alpha(200, 40) == 0.0  # her hair
    assert alpha(30, 60) == 0.0  # the flag behind her (background)
    assert parts.skin[110 - oy, 226 - ox] > 0.5 and parts.hair[40 - oy, 200 - ox] > 0.5
    cut = isolator.garment(image, person, "all")
    assert cut.coverage > 0.2 and cut.image.mode == "RGBA"


@pytest.mark.e2e
def test_isolation_rejects_a_box_outside_the_photo(stages: tuple) -> None:
    _, isolator = stages
    image = _photo("chelsea")
    with pytest.raises(QueryError, match="no area"):
        isolator.salient(image, [Box(600, 0, 700, 100)])
    with pytest.raises(QueryError, match="no area"):
        isolator.garment(image, Box(10, 10, 10, 200))
    (cut,) = isolator.salient(image, [Box(-100, -100, 5000, 5000)])  # clipped to the photo
    # The margin may reach past the photo's edge, but nothing from outside it is shown.
    alpha = np.asarray(cut.image)[..., 3]
    left, top = -math.floor(cut.box.x1), -math.floor(cut.box.y1)
    assert cut.box.x1 >= -0.1 * image.size[0] and cut.box.x2 <= 1.1 * image.size[0]
    assert alpha[:, :left].max(initial=0) == 0 and alpha[:top, :].max(initial=0) == 0


# --- garment masks from hand-made parts ----------------------------------------------------------


class _Parts:
    """A ClothesMasker stand-in: cloth everywhere except a skin square at the top centre."""

    def parts(self, crop: Image.Image) -> np.ndarray:
        w, h = crop.size
        skin, clothes, hair = (np.zeros((h, w), np.float32) for _ in range(3))
        clothes[:] = 1.0
        skin[: h // 10, w // 3 : 2 * w // 3] = 1.0
        return np.stack([skin, clothes, hair])


def test_split_garments_needs_a_colour_edge_at_the_waistline() -> None:
    from lookalike.pipeline.isolate import split_garments

    cloth = np.ones((100, 40), np.float32)
    two = np.zeros((100, 40, 3), np.uint8)
    two[:60] = (200, 30, 30)  # red top
    two[60:] = (30, 40, 120)  # navy trousers
    assert split_garments(cloth, two) == 60
    one = np.full((100, 40, 3), 90, np.uint8)
    assert split_garments(cloth, one) is None
    # A dark collar on one garment: part means differ, but nothing changes at any row below it.
    collar = one.copy()
    collar[:12] = 10
    assert split_garments(cloth, collar) is None
    assert split_garments(cloth, collar, band=None, min_gap=18.0) is not None  # the first version


def test_garment_without_a_waistline_ends_at_the_waist_prior_and_loses_skin() -> None:
    from lookalike.pipeline.isolate import Isolator

    image = Image.new("RGB", (50, 100), (90, 90, 90))
    isolator = Isolator(None, _Parts())  # type: ignore[arg-type]
    parts = isolator.garment_parts(image, Box(0, 0, 50, 100), "upper")
    assert parts.split_row is None
    assert parts.alpha[:80, 5].min() == 1.0 and parts.alpha[80:].max() == 0.0  # waist 0.8
    assert parts.alpha[:10, 20:30].max() == 0.0  # skin removed
    lower = isolator.garment_parts(image, Box(0, 0, 50, 100), "lower")
    assert lower.alpha[:80].max() == 0.0 and lower.alpha[80:].min() == 1.0
    whole = isolator.garment_parts(image, Box(0, 0, 50, 100), "all", waist=None)
    assert whole.alpha[10:].min() == 1.0


@pytest.mark.e2e
def test_pan_rebuilt_for_a_smaller_side_still_finds_the_suit_face_and_hair(
    stages: tuple, model_store: ModelStore
) -> None:
    from lookalike.errors import ModelError
    from lookalike.pipeline.segment import ClothesMasker

    detector, _ = stages
    image = _photo("astronaut")
    person = _best(detector, image, "person")
    from lookalike.pipeline.isolate import Isolator

    small = Isolator.from_store(model_store, ("garment",), clothes_size=256)
    assert small.clothes_masker.input_size == 256  # type: ignore[union-attr]
    parts = small.garment_parts(image, person, "all")
    assert parts.alpha.shape == parts.clothes.shape
    ox, oy = math.floor(parts.person.x1), math.floor(parts.person.y1)
    assert parts.alpha[340 - oy, 120 - ox] > 0.9  # the suit
    assert parts.alpha[110 - oy, 226 - ox] == 0.0 and parts.skin[110 - oy, 226 - ox] > 0.5
    assert parts.alpha[40 - oy, 200 - ox] == 0.0 and parts.hair[40 - oy, 200 - ox] > 0.5
    # The rebuilt graph's masks agree with the native 512 px ones on most of the person box.
    native = Isolator.from_store(model_store, ("garment",), clothes_size=None)
    ref = native.garment_parts(image, person, "all").alpha >= 0.5
    got = parts.alpha >= 0.5
    overlap = (ref & got).sum() / (ref | got).sum()
    assert overlap > 0.65, overlap  # 0.74 measured: a 358x489 crop squashed to 256 loses detail
    # fit_small (the default): small crops run at their own side, large ones at the full 512.
    fitted = native.clothes_masker
    assert fitted.size_for((150, 250)) == 256 and fitted.size_for((358, 489)) == 512  # type: ignore[union-attr]
    fixed = ClothesMasker.from_store(model_store, fit_small=False)
    assert fixed.size_for((150, 250)) == 512
    with pytest.raises(ModelError, match="multiple of 64"):
        ClothesMasker.from_store(model_store, input_size=300)


@pytest.mark.e2e
def test_u2netp_runs_small_crops_at_their_own_side_with_the_same_cup(
    stages: tuple, model_store: ModelStore
) -> None:
    from lookalike.pipeline.segment import SalientMasker

    detector, _ = stages
    coffee = _photo("coffee").resize((200, 150))  # the cup crop is then about 100 px
    cup = _best(detector, coffee, "cup")
    crop = coffee.crop(tuple(round(v) for v in cup.as_list()))
    small = SalientMasker.from_store(model_store, fit_small=True)
    native = SalientMasker.from_store(model_store)
    assert small.size_for(crop.size) < 160 and native.size_for(crop.size) == 320
    assert small.size_for((500, 400)) == 320  # large crops are not upscaled beyond the native side
    # Crops of different sides in one call: batched by side, returned in order, at their own size.
    other = coffee.crop((0, 0, 200, 150))
    got, whole = small.masks([crop, other])
    assert got.shape == (crop.size[1], crop.size[0]) and whole.shape == (150, 200)
    ref = native.masks([crop])[0] >= 0.5
    overlap = (ref & (got >= 0.5)).sum() / (ref | (got >= 0.5)).sum()
    assert overlap > 0.7, overlap  # 0.79 measured on this ~100 px crop (run at 128 px, not 320)
