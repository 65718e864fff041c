"""The held-out guard of `tune --train`: how far held-out R@1 may fall before training stops."""

from __future__ import annotations

import pytest

from lookalike.learn.train import guard_width


def test_large_draw_keeps_the_setting() -> None:
    # 514 held-out grocery photos at R@1 0.9: two standard errors are 0.026, under the setting.
    assert guard_width(0.05, 0.9, 514) == 0.05


def test_small_draw_widens_to_its_noise() -> None:
    # 60 held-out worn photos at R@1 0.333 (garments, 300 pairs): 0.05 is three queries, while two
    # standard errors of the draw are 0.12. The fixed 0.05 stopped that run after its warm-up.
    width = guard_width(0.05, 1 / 3, 60)
    assert width == pytest.approx(2 * (1 / 3 * 2 / 3 / 60) ** 0.5)
    assert width > 0.12


def test_at_least_two_queries_even_when_recall_is_certain() -> None:
    assert guard_width(0.0, 1.0, 10) == pytest.approx(0.2)
    assert guard_width(0.0, 0.0, 0) == pytest.approx(2.0)  # no queries: never stops on the draw
