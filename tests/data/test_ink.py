"""The ink rule on hand-made photos: pen strokes found; skin, short hairs and pigment ignored."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import circle_perimeter, disk, line

from skintl.data.ink import InkRule, ink_mask, line_components, rgb_to_lab, violet_shift

SKIN = (200, 150, 130)
#: a faint violet pen line as PAT_1014_86_861 shows it
VIOLET_INK = (140, 109, 119)


def _skin(size: int = 300, seed: int = 0) -> np.ndarray:
    """Skin-coloured photo with pixel noise, lightly smoothed like a downscaled JPEG."""
    rng = np.random.default_rng(seed)
    img = np.asarray(SKIN, float) + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _thick(rr: np.ndarray, cc: np.ndarray, shape: tuple[int, int], width: int) -> np.ndarray:
    """A (H, W) bool stroke: the pixels ``(rr, cc)`` widened to ``width`` px."""
    m = np.zeros(shape, bool)
    m[np.clip(rr, 0, shape[0] - 1), np.clip(cc, 0, shape[1] - 1)] = True
    return ndimage.binary_dilation(m, iterations=(width - 1) // 2) if width > 1 else m


def _circle(shape: tuple[int, int], r: int = 60, width: int = 3) -> np.ndarray:
    rr, cc = circle_perimeter(shape[0] // 2, shape[1] // 2, r, shape=shape)
    return _thick(rr, cc, shape, width)


def _paint(img: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = img.copy()
    out[where] = colour
    return out


def test_plain_skin_has_no_ink() -> None:
    assert not ink_mask(_skin()).any()


@pytest.mark.parametrize("colour", [VIOLET_INK, (40, 60, 200), (30, 140, 60)])
def test_a_pen_circle_is_found(colour: tuple[int, int, int]) -> None:
    """A faint violet, a blue and a green 3 px circle on skin: found, and nothing else."""
    img = _skin()
    stroke = _circle(img.shape[:2])
    found = ink_mask(_paint(img, stroke, colour))
    assert (found & stroke).sum() >= 0.9 * stroke.sum()
    assert (found & ~stroke).sum() <= 0.05 * stroke.sum()


def _strokes(shape: tuple[int, int], length: int, cell: int, width: int) -> np.ndarray:
    """Straight strokes of ``length`` px and ``width`` px, one per ``cell`` px square of a
    grid, apart from each other, at seeded angles."""
    rng = np.random.default_rng(1)
    out = np.zeros(shape, bool)
    for y in range(10, shape[0] - cell, cell):
        for x in range(10, shape[1] - cell, cell):
            angle = rng.uniform(0, np.pi / 2)
            y1, x1 = int(y + length * np.sin(angle)), int(x + length * np.cos(angle))
            out |= _thick(*line(y, x, y1, x1), shape, width)
    return out


@pytest.mark.parametrize("colour", [VIOLET_INK, (70, 45, 35)])
def test_short_lines_are_not_ink_whatever_their_colour(colour: tuple[int, int, int]) -> None:
    """Hair-like lines 15 px long, 3 px wide, in pen colour or dark brown: below the limit."""
    img = _skin()
    assert not ink_mask(_paint(img, _strokes(img.shape[:2], 15, 40, 3), colour)).any()


def test_the_same_lines_longer_are_ink() -> None:
    """Strokes like the short ones but 80 px long pass the length limit (the limit decides)."""
    img = _skin()
    strokes = _strokes(img.shape[:2], 80, 140, 3)
    assert (ink_mask(_paint(img, strokes, VIOLET_INK)) & strokes).sum() >= 0.8 * strokes.sum()


@pytest.mark.parametrize("colour", [VIOLET_INK, (120, 70, 60)])
def test_compact_pigment_is_not_ink(colour: tuple[int, int, int]) -> None:
    """A lesion-like disc 40 px across, even in the pen's colour: too wide to be a line."""
    img = _skin()
    pigment = np.zeros(img.shape[:2], bool)
    pigment[disk((150, 150), 20, shape=img.shape[:2])] = True
    assert not ink_mask(_paint(img, pigment, colour)).any()


def test_ink_is_found_beside_hairs_and_pigment() -> None:
    """The same hand-made case with a violet circle around the pigment: only the circle."""
    img = _skin()
    shape = img.shape[:2]
    pigment = np.zeros(shape, bool)
    pigment[disk((150, 150), 20, shape=shape)] = True
    stroke = _circle(shape, r=50)
    img = _paint(_paint(img, pigment, (120, 70, 60)), stroke, VIOLET_INK)
    found = ink_mask(img)
    assert (found & stroke).sum() >= 0.9 * stroke.sum()
    assert not (found & pigment).any()


def test_lengths_scale_with_the_photo() -> None:
    """A circle of 1/5 of the photo found at 300 px and at 600 px (lines twice as wide)."""
    for size, width in ((300, 3), (600, 5)):
        img = _skin(size)
        stroke = _circle((size, size), r=size // 5, width=width)
        found = ink_mask(_paint(img, stroke, VIOLET_INK))
        assert (found & stroke).sum() >= 0.9 * stroke.sum()


def test_violet_shift_is_zero_for_shades_of_skin_and_positive_for_violet() -> None:
    """A darker copy of the skin colour keeps its hue; the pen colour turns towards violet."""
    img = np.zeros((10, 10, 3), np.uint8)
    img[:] = SKIN
    img[0, :3] = (100, 75, 65)  # the skin at half brightness
    img[1, :3] = VIOLET_INK
    v = violet_shift(rgb_to_lab(img))
    assert abs(v[0, :3]).max() < 1.5
    assert v[1, :3].min() > InkRule().min_violet


def test_line_components_keep_long_thin_unbranched_lines() -> None:
    """Hand-made candidates: a long line stays; a blob, a short line and a hair mesh go."""
    cand = np.zeros((200, 200), bool)
    long_line = np.zeros_like(cand)
    long_line[20:23, 20:120] = True  # 100 px long, 3 px wide
    cand |= long_line
    cand[120:160, 20:60] = True  # blob: 40 x 40
    cand[60:62, 150:170] = True  # short line: 20 px
    cand[100:146, 160:162] = True  # a mesh: a 46 px stem with 9 strands of 12 px, 11 free ends
    for k in range(9):
        side = slice(162, 174) if k % 2 else slice(148, 160)
        cand[102 + 5 * k : 104 + 5 * k, side] = True
    kept = line_components(cand, min_length=30, max_width=10, min_length_per_end=18)
    assert np.array_equal(kept, long_line)
    # the branch points alone drop the mesh too (9 for 120 px of skeleton)
    kept = line_components(cand, min_length=30, max_width=10, min_length_per_branch=15)
    assert np.array_equal(kept, long_line)
    assert line_components(cand, min_length=30, max_width=10)[130, 161]  # the mesh, unchecked


def test_a_found_line_is_followed_into_its_faint_stretch() -> None:
    """A circle with a pale 30 px stretch: followed from the clear rest (up to
    ``extend`` = 2 line widths, 18 px, from each side)."""
    img = _skin()
    stroke = _circle(img.shape[:2])  # radius 60 around (150, 150)
    faint = stroke.copy()
    faint[:, :208] = False  # the arc right of x = 208: +-15 degrees, about 30 px
    pale = (176, 134, 126)  # 40 % of the way from the skin to the pen's colour
    img = _paint(_paint(img, stroke & ~faint, VIOLET_INK), faint, pale)
    assert (ink_mask(img, InkRule(extend=0)) & faint).sum() < 0.5 * faint.sum()
    found = ink_mask(img)
    assert (found & faint).sum() >= 0.8 * faint.sum()
    assert (found & ~stroke).sum() <= 0.05 * stroke.sum()
