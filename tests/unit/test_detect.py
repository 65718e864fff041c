"""Detection: the pure pre/post-processing on hand-made arrays, and YOLOX-Nano on scikit-image's
bundled photos (the person in `astronaut`, the cup in `coffee`, the cat in `chelsea`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.models.store import ModelStore
from lookalike.pipeline.detect import (
    Detection,
    decode_outputs,
    fit_side,
    letterbox,
    most_relevant,
    nms,
    preset_labels,
    relevant,
)
from lookalike.types import Box

# --- pure functions ------------------------------------------------------------------------------


def test_letterbox_scales_to_fit_top_left_and_pads_grey() -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    tensor, scale = letterbox(image, 64)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert scale == pytest.approx(0.32)
    # BGR: red lands in channel 2, and only in the top 32 rows; below is the grey pad.
    assert tensor[0, 2, 10, 10] == 255 and tensor[0, 0, 10, 10] == 0
    assert (tensor[0, :, 40:, :] == 114).all()


def test_decode_outputs_maps_cells_to_pixels_and_rejects_a_wrong_anchor_count() -> None:
    size, strides = 32, (8, 16, 32)
    rows = 16 + 4 + 1
    raw = np.zeros((rows, 5 + 2), dtype=np.float32)
    raw[5, 4], raw[5, 6] = 0.9, 0.5  # cell (1, 1) of the stride-8 grid, class 1
    boxes, scores = decode_outputs(raw, size, strides)
    # centre (1 + 0) * 8 = 8, width exp(0) * 8 = 8 -> [4, 4, 12, 12]
    assert boxes[5].tolist() == pytest.approx([4, 4, 12, 12])
    assert scores[5].tolist() == pytest.approx([0.0, 0.45])
    with pytest.raises(ValueError, match="anchor rows"):
        decode_outputs(raw[:-1], size, strides)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    # Box 2 is another class: it survives class-wise NMS.
    assert nms(boxes, scores, 0.5, np.array([0, 0, 1, 0])).tolist() == [0, 2, 3]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_relevance_prefers_the_large_central_object_of_a_wanted_label() -> None:
    size = (100, 100)
    small = Detection(Box(0, 0, 10, 10), "cup", 0.95)
    big = Detection(Box(20, 20, 80, 80), "cup", 0.6)
    other = Detection(Box(0, 0, 100, 100), "dining table", 0.9)
    assert most_relevant([small, big, other], size, {"cup"}) == big
    assert relevant([small, big, other], {"cup"}, min_score=0.7) == [small]
    assert most_relevant([other], size, {"cup"}) is None
    assert preset_labels("all") is None and "person" in (preset_labels("fashion") or ())
    with pytest.raises(LookalikeError, match="valid presets"):
        preset_labels("shoes")


def test_fit_side_never_upscales_past_the_photo_and_keeps_the_stride() -> None:
    assert fit_side((192, 256), 416) == 256  # a fashion worn photo: its own size
    assert fit_side((200, 130), 416) == 224  # rounded up to a multiple of 32
    assert fit_side((348, 464), 416) == 416  # larger than the network: letterboxed down as before
    assert fit_side((10, 12), 416) == 64  # at least two cells of the coarsest grid
    assert fit_side((300, 300), 416, step=64) == 320


# --- YOLOX-Nano on real photos -------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector(model_store: ModelStore) -> object:
    from lookalike.pipeline.detect import YoloxDetector

    return YoloxDetector.from_store(model_store)


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def _inside(box: Box, size: tuple[int, int]) -> bool:
    return 0 <= box.x1 < box.x2 <= size[0] and 0 <= box.y1 < box.y2 <= size[1]


@pytest.mark.e2e
def test_the_astronaut_is_a_person(detector: object) -> None:
    image = _photo("astronaut")  # 512 x 512, Eileen Collins from the waist up, left of centre
    found = detector.detect(image)  # type: ignore[attr-defined]
    best = most_relevant(found, image.size, {"person"})
    assert best is not None and best.score >= 0.6, found
    assert _inside(best.box, image.size)
    # Her face (about 226, 110) and her chest (about 120, 340) are inside the box; the
    # shuttle model at the right edge (about 410, 150) is not.
    b = best.box
    assert b.x1 < 120 < b.x2 and b.y1 < 110 < b.y2 and b.y2 > 340
    assert not (b.x1 < 410 < b.x2 and b.y1 < 150 < b.y2)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


@pytest.mark.e2e
def test_the_coffee_is_a_cup_and_the_cat_is_not_a_person(detector: object) -> None:
    coffee = _photo("coffee")  # 600 x 400, a cup on a saucer seen from above
    cup = most_relevant(detector.detect(coffee), coffee.size, {"cup"})  # type: ignore[attr-defined]
    assert cup is not None and cup.score >= 0.6
    # The cup fills the middle of the photo, the table around it is not part of the box.
    b = cup.box
    assert b.x1 < 300 < b.x2 and b.y1 < 150 < b.y2
    assert (b.x2 - b.x1) * (b.y2 - b.y1) < 0.5 * 600 * 400
    chelsea = _photo("chelsea")
    labels = {d.label for d in detector.detect(chelsea)}  # type: ignore[attr-defined]
    assert "cat" in labels and "person" not in labels


@pytest.mark.e2e
def test_detection_on_a_tiny_or_blank_photo_finds_nothing_and_does_not_crash(
    detector: object,
) -> None:
    assert detector.detect(Image.new("RGB", (1, 1), "white")) == []  # type: ignore[attr-defined]
    assert detector.detect(Image.new("L", (300, 20), 128)) == []  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_a_small_photo_runs_at_its_own_side_and_finds_the_same_person(
    detector: object, model_store: ModelStore
) -> None:
    from lookalike.pipeline.detect import YoloxDetector, iou

    fixed = YoloxDetector.from_store(model_store, fit_small=False)
    assert detector.fit_small and not fixed.fit_small  # type: ignore[attr-defined]
    small = _photo("astronaut").resize((192, 256))
    assert detector.size_for(small.size) == 256 and fixed.size_for(small.size) == 416  # type: ignore[attr-defined]
    a = most_relevant(detector.detect(small), small.size, {"person"})  # type: ignore[attr-defined]
    b = most_relevant(fixed.detect(small), small.size, {"person"})
    assert a is not None and b is not None and a.score >= 0.5
    overlap = iou(np.array(a.box.as_list()), np.array([b.box.as_list()]))[0]
    assert overlap > 0.85, (a.box, b.box)
    # A photo larger than the network is letterboxed down exactly as before.
    big = _photo("astronaut")
    assert detector.size_for(big.size) == 416  # type: ignore[attr-defined]
    assert detector.detect(big) == fixed.detect(big)  # type: ignore[attr-defined]
