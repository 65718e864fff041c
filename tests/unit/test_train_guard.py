"""The held-out guard of `tune --train`: how far held-out R@1 may fall before training stops."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.learn.heldout import Guard, centroid_recall, grace_epochs, guard_width


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


def test_grace_is_a_quarter_of_the_schedule_at_least_three() -> None:
    assert grace_epochs(60) == 15
    assert grace_epochs(10) == 3
    assert grace_epochs(1) == 3


def test_the_dip_after_the_warm_up_does_not_stop_training() -> None:
    # Garments fold 1: 0.333 after epoch 1, 0.117 at epoch 2 (the learning rate's peak).
    guard = Guard(width=0.116, grace=grace_epochs(60))
    assert not guard.stops(2, 11.6, 0.117, 0.333)
    assert guard.stops(16, 3.0, 0.2, 0.333)  # after the grace a fall that wide stops
    assert not guard.stops(16, 3.0, 0.25, 0.333)  # within the width it does not


def test_a_diverging_loss_stops_at_any_epoch() -> None:
    guard = Guard(width=0.05, grace=15)
    assert guard.stops(1, float("nan"), 0.5, 0.4)
    assert guard.stops(2, float("inf"), 0.5, 0.4)


def test_centroid_recall_and_margin() -> None:
    gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    items = ["a", "a", "b"]
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    r1, margin = centroid_recall(gallery, items, queries, ["a", "b", "c"])
    assert r1 == pytest.approx(2 / 3)  # "c" is not in the gallery: a miss
    cent_a = np.array([1.8, 0.6]) / np.linalg.norm([1.8, 0.6])
    expected = [
        cent_a[0] - 0.0,
        1.0 - cent_a[1],
        -1.0 - max(0.6 * cent_a[0] + 0.8 * cent_a[1], 0.8),
    ]
    assert margin == pytest.approx(np.mean(expected))


def test_the_schedule_fits_the_budget_with_its_checks() -> None:
    from lookalike.learn.data import fit_epochs

    # Grocery on 2 cores (2026-12-06): 43 s of training and an 18 s check per epoch, 800 s left
    # after epoch 1. Counting training only planned 19 more epochs; the clock stopped the run
    # after 13 with the cosine at a fifth of its peak. With the checks: 12 more, then 0.
    assert fit_epochs(1, 60, 800.0, 43.0, 18.0) == 1 + int((800 - 18) / (43 + 18))
    # Cheap checks run every few epochs: their share is spread over them.
    assert fit_epochs(1, 60, 800.0, 10.0, 18.0) == 1 + int(782 / (10 + 18 / 4))
    # Refitted both ways (a slow first epoch does not fix the length), within the most allowed.
    assert fit_epochs(5, 60, 800.0, 30.0, 18.0) == 5 + int(782 / (30 + 18 / 2))
    assert fit_epochs(5, 12, 10_000.0, 43.0, 18.0) == 12
    # Out of time: this epoch is the last; never before it.
    assert fit_epochs(7, 12, 5.0, 43.0, 18.0) == 7
