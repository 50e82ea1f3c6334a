"""Patch labelling rules on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from skintl.data.patches import (
    DROPPED_CODE,
    HEALTHY_CODE,
    PatchRule,
    cap_per_class,
    cut_patches,
    label_patches,
)


def _map(h: int, w: int) -> np.ndarray:
    return np.full((h, w), -1, dtype=np.int8)


def test_lesion_fraction_threshold_is_inclusive() -> None:
    lab = _map(10, 20)
    lab[:, :6] = 0  # left patch (x 0..9): 60 % class 0
    lab[:, 10:15] = 1  # right patch (x 10..19): 50 % class 1
    codes = label_patches(lab, 2, PatchRule(10, 10, 0.6, 0))
    assert codes.tolist() == [[0, DROPPED_CODE]]


def test_healthy_needs_margin_from_every_lesion() -> None:
    lab = _map(10, 40)
    lab[0, 0] = 0  # a single lesion pixel in the first patch
    rule = PatchRule(10, 10, 0.6, 5)
    # patch 0 holds the lesion pixel; patch 1 (x 10..19) is 10 px away; margin 5 -> healthy
    assert label_patches(lab, 1, rule).tolist() == [[DROPPED_CODE] + [HEALTHY_CODE] * 3]
    # margin 12: x=10 is within 12 px of the lesion, x=20 is not
    codes = label_patches(lab, 1, PatchRule(10, 10, 0.6, 12))
    assert codes.tolist() == [[DROPPED_CODE, DROPPED_CODE, HEALTHY_CODE, HEALTHY_CODE]]


def test_margin_is_euclidean() -> None:
    lab = _map(30, 30)
    lab[0, 0] = 0
    # the patch at (10, 10) is at distance sqrt(200) ~ 14.1 from the lesion pixel
    assert label_patches(lab, 1, PatchRule(10, 10, 0.6, 14))[1, 1] == HEALTHY_CODE
    assert label_patches(lab, 1, PatchRule(10, 10, 0.6, 15))[1, 1] == DROPPED_CODE


def test_no_lesion_means_all_healthy_and_grid_fits_inside() -> None:
    codes = label_patches(_map(35, 47), 2, PatchRule(10, 5, 0.6, 3))
    assert codes.shape == (6, 8)  # origins 0..25 and 0..35 in steps of 5
    assert (codes == HEALTHY_CODE).all()


def test_two_classes_in_one_patch() -> None:
    lab = _map(10, 10)
    lab[:, :7] = 1
    lab[:, 7:] = 0
    assert label_patches(lab, 2, PatchRule(10, 10, 0.7, 0)).tolist() == [[1]]
    assert label_patches(lab, 2, PatchRule(10, 10, 0.75, 0)).tolist() == [[DROPPED_CODE]]


def test_cut_patches_takes_the_right_pixels() -> None:
    img = np.arange(20 * 30 * 3, dtype=np.int64).reshape(20, 30, 3)
    out = cut_patches(img, np.array([0, 5]), np.array([10, 3]), 8)
    assert out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(out[1], img[5:13, 3:11])


@pytest.mark.parametrize("cap", [1, 3, None])
def test_cap_per_class(cap: int | None) -> None:
    labels = np.array(["a"] * 5 + ["b"] * 2)
    keep = cap_per_class(labels, cap, np.random.default_rng(0))
    got = {c: int((labels[keep] == c).sum()) for c in "ab"}
    assert got == {"a": min(5, cap or 5), "b": min(2, cap or 2)}
    assert np.all(np.diff(keep) > 0)
