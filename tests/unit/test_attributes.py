"""Automatic attributes: named colours on generated images, ImageNet names from the package."""

from __future__ import annotations

from PIL import Image, ImageDraw

from lookalike.pipeline.attributes import dominant_colours, imagenet_class_names


def _product_on_white(colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (200, 200), (250, 250, 250))
    ImageDraw.Draw(image).ellipse((40, 40, 160, 160), fill=colour)
    return image


def test_studio_background_is_ignored() -> None:
    assert dominant_colours(_product_on_white((210, 30, 30))) == ["red"]
    assert dominant_colours(_product_on_white((40, 150, 50))) == ["green"]
    assert dominant_colours(_product_on_white((240, 210, 40))) == ["yellow"]
    assert dominant_colours(_product_on_white((20, 20, 20))) == ["black"]


def test_dim_orange_is_brown_and_shares_are_ordered() -> None:
    assert dominant_colours(_product_on_white((110, 60, 20))) == ["brown"]
    image = _product_on_white((30, 60, 200))  # a blue product with a pink label
    ImageDraw.Draw(image).rectangle((80, 80, 130, 125), fill=(230, 120, 170))
    assert dominant_colours(image) == ["blue", "pink"]
    # A uniform coloured border is a background too, whatever its colour.
    framed = Image.new("RGB", (100, 100), (30, 60, 200))
    ImageDraw.Draw(framed).rectangle((30, 30, 60, 70), fill=(230, 120, 170))
    assert dominant_colours(framed) == ["pink"]


def test_all_background_describes_the_whole_photo() -> None:
    assert dominant_colours(Image.new("RGB", (64, 64), (250, 250, 250))) == ["white"]


def test_imagenet_names() -> None:
    assert imagenet_class_names([(948, 0.8), (951, 0.15), (0, 0.01)]) == [
        "granny smith apple",
        "lemon",
    ]
