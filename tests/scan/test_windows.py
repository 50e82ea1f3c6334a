"""Window placement covers exactly the skin mask, in every mode; the skin rule itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from skintl.scan.skin import skin_candidates, skin_mask
from skintl.scan.windows import grid_windows, paint, superpixel_windows


def _blobs(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 4) > 0.02


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    h=st.integers(5, 90),
    w=st.integers(5, 90),
    stride=st.integers(1, 13),
    size=st.integers(4, 40),
)
def test_grid_windows_cover_exactly_the_skin(
    seed: int, h: int, w: int, stride: int, size: int
) -> None:
    skin = _blobs(seed, (h, w))
    win = grid_windows(skin, size, stride, enc_stride=8)
    assert np.array_equal(win.owner >= 0, skin)
    # one window per cell holding skin, and every window paints some skin
    assert sorted(np.unique(win.owner[skin])) == list(range(len(win)))
    # each window is centred on the pixels it paints (within half a cell)
    for i in np.unique(win.owner[skin])[:20]:
        ys, xs = np.nonzero(win.owner == i)
        cy, cx = win.ys[i] - win.pad + size / 2, win.xs[i] - win.pad + size / 2
        assert abs(cy - (ys.min() // stride * stride + stride / 2)) <= 1
        assert abs(cx - (xs.min() // stride * stride + stride / 2)) <= 1
    # every window fits in the reflect-padded photo
    assert win.pad % 8 == 0 and (win.ys >= 0).all() and (win.xs >= 0).all()
    assert (win.ys + size <= h + 2 * win.pad).all() and (win.xs + size <= w + 2 * win.pad).all()


def test_superpixel_windows_cover_exactly_the_skin() -> None:
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.normal(size=(80, 100, 3)), (3, 3, 0))
    photo = np.clip(128 + 400 * noise, 0, 255).astype(np.uint8)
    skin = _blobs(1, (80, 100))
    win = superpixel_windows(photo, skin, size=16, enc_stride=8)
    assert np.array_equal(win.owner >= 0, skin)
    assert sorted(np.unique(win.owner[skin])) == list(range(len(win)))
    assert len(win) > 5


def test_paint_is_nan_off_the_skin() -> None:
    skin = _blobs(2, (30, 40))
    win = grid_windows(skin, 8, 5)
    values = np.random.default_rng(0).random((len(win), 3)).astype(np.float32)
    m = paint(win.owner, values)
    assert np.isnan(m[~skin]).all() and not np.isnan(m[skin]).any()
    y, x = np.argwhere(skin)[0]
    np.testing.assert_array_equal(m[y, x], values[win.owner[y, x]])


def test_skin_rule() -> None:
    photo = np.zeros((120, 160, 3), np.uint8)
    photo[:, :] = (40, 90, 160)  # blue cloth
    photo[20:100, 20:120] = (200, 150, 130)  # skin
    photo[50:60, 50:60] = (235, 235, 235)  # whitish scale inside the skin: a hole, filled
    photo[30:40, 90:100] = (120, 70, 50)  # brown lesion
    photo[:, 140:] = (250, 250, 250)  # white background
    cand = skin_candidates(photo)
    assert cand[25, 25] and cand[35, 95] and not cand[55, 55] and not cand[5, 5]
    assert not cand[5, 150]
    mask = skin_mask(photo, min_size=16)
    assert mask[22:98, 22:118].all()  # the skin, its lesion and its scale (corners rounded)
    assert not mask[:20].any() and not mask[100:].any() and not mask[:, 120:].any()
    assert mask.sum() >= 80 * 100 - 4 * 4
    tiny = photo.copy()
    tiny[105:110, 125:130] = (200, 150, 130)  # a speck smaller than a window
    assert np.array_equal(skin_mask(tiny, 16), mask)


@pytest.mark.parametrize("colour", [(10, 8, 6), (255, 255, 255)])
def test_dark_and_saturated_are_not_skin(colour: tuple[int, int, int]) -> None:
    assert not skin_candidates(np.full((4, 4, 3), colour, np.uint8)).any()


@pytest.mark.parametrize("op", ["open", "close"])
def test_morphology_equals_scipys_with_a_disk(op: str) -> None:
    from skimage.morphology import disk

    from skintl.scan.skin import morph

    rng = np.random.default_rng(0)
    for radius in (1, 2, 3, 6, 9):
        # blobs and specks of every size, touching the edges
        mask = ndimage.gaussian_filter(rng.random((90, 120)), 2.5) > 0.5
        mask |= rng.random((90, 120)) > 0.97
        padded = np.pad(mask, radius, mode="edge")
        f = ndimage.binary_opening if op == "open" else ndimage.binary_closing
        want = f(padded, disk(radius).astype(bool))[radius:-radius, radius:-radius]
        np.testing.assert_array_equal(morph(mask, op, radius), want)
