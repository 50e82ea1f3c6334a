"""Pen / marker ink on clinical photos: a colour-and-shape rule, arrays in, arrays out.

Why: in PAD-UFES-20 many actinic-keratosis photos have the lesion circled with a marker pen and
almost no seborrheic-keratosis photo has, so a classifier can learn "ink means AK". On the
300 px photos the marks are faint, thin violet / pinkish-grey lines, not saturated strokes, so a
fixed-hue rule finds nothing; this rule is relative to each photo's own skin colour.

The rule (CIELAB; lengths in px of a photo whose short side is ``reference_side`` px, scaled
with the photo):

1. Colour. The photo's skin colour is the median (a*, b*) of its pixels. ``violet_shift`` is
   each pixel's (a*, b*) projected on the direction 90 degrees clockwise of it (from the skin's
   orange towards red-violet and blue), minus its median: a darker shade of the skin (shadow,
   brown hair, pigment) keeps the skin's hue and scores about 0; violet and blue ink score high.
2. Candidates. A pixel is a candidate when it is ``min_darkening`` L* darker than its
   surroundings (a black top-hat of L* over a ``line_width`` square, so only lines narrower
   than that count) and its violet shift is at least ``min_violet``. Plainly green or blue
   pixels (a* <= -``min_violet`` or b* <= -2 ``min_violet``; skin and its lesions are never
   there) are candidates at any darkness. Lines one pixel wide (hairs) are opened away.
3. Shape. Candidates up to ``join_gap`` px apart are joined; a connected component is ink only
   when it is a long, thin, unbranched line: skeleton length >= ``min_length``, mean width
   (area / skeleton length) <= ``max_width``, at least ``min_length_per_end`` px of skeleton per
   free end and ``min_length_per_branch`` per branch point. Compact pigment is too wide, short
   hairs and creases too short, meshes of hair and skin texture too branched.
4. A photo has ink when these lines cover more than ``min_fraction`` of it (otherwise its mask
   is empty: specks of hair or texture, a stray tick); its lines are then followed into fainter
   pixels (half both thresholds) for up to ``extend`` line widths, so the mask covers the faint
   stretches of a circle too.

Known failure cases (checked by eye on PAD-UFES-20's ACK and SEK photos; README):
- Black or dark-grey marker is missed: by colour it is a dark hair.
- Faint, broken or short marks are missed (a small tick, a pale circle drawn over a pink or
  violet lesion): their pieces fall below ``min_length`` or their hue barely turns.
- A found circle is often covered only in part: gaps of a few px to a few tens of px remain.
- False alarms: dark crusts and lesion borders that turn violet, shadows at the edge of
  instruments or clothing, and dense hair over red skin that survives the branching test.
- The skin reference is the photo's median colour, so a photo filled by a lesion, clothing or
  background has a shifted reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: bump when the rule's code changes what it finds, so that every manifest is recomputed
INK_RULE_VERSION = 1
#: the share of both thresholds a found line is followed into
FAINT = 0.5


@dataclass(frozen=True)
class InkRule:
    """Thresholds of :func:`ink_mask`; lengths in px at a short side of ``reference_side`` px."""

    min_darkening: float = 8.0
    min_violet: float = 5.0
    line_width: int = 9
    min_length: float = 30.0
    max_width: float = 10.0
    min_length_per_end: float = 10.0
    min_length_per_branch: float = 12.0
    join_gap: int = 5
    extend: int = 2
    min_fraction: float = 0.002
    reference_side: int = 300


def _srgb_to_linear() -> np.ndarray:
    c = np.arange(256) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_LINEAR = _srgb_to_linear()
# sRGB (D65) -> XYZ, each row divided by the D65 white point's X, Y, Z
_RGB_TO_XYZ = (
    np.array(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    / np.array([0.95047, 1.0, 1.08883])[:, None]
).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an (H, W, 3) uint8 image: (H, W, 3) float32 L*, a*, b*.

    skimage's ``rgb2lab`` in float32 with a lookup table for the sRGB curve (several times
    faster; equal to it within 1e-3).
    """
    xyz = _LINEAR[rgb] @ _RGB_TO_XYZ.T
    eps = np.float32(216 / 24389)
    f = np.where(xyz > eps, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def _scaled(rule: InkRule, shape: tuple[int, ...]) -> tuple[int, float, float]:
    """Line width (odd, >= 3), minimum length and maximum width at this photo's scale."""
    s = min(shape[:2]) / rule.reference_side
    width = max(3, round(rule.line_width * s) | 1)
    return width, rule.min_length * s, rule.max_width * s


def violet_shift(lab: np.ndarray) -> np.ndarray:
    """How far each pixel's hue is turned from the photo's skin towards violet / blue: (H, W).

    The (a*, b*) of each pixel projected on the unit vector 90 degrees clockwise of the photo's
    median (a*, b*), minus that projection's median (so skin scores about 0).
    """
    a, b = lab[..., 1], lab[..., 2]
    am, bm = float(np.median(a)), float(np.median(b))
    norm = max(float(np.hypot(am, bm)), 1e-6)
    v = (a * bm - b * am) / norm
    return v - np.median(v)


def _darkening(lab: np.ndarray, width: int) -> np.ndarray:
    """How much darker (L*) than its surroundings each pixel is, for lines under ``width`` px."""
    L = lab[..., 0]
    return np.asarray(ndimage.grey_closing(L, size=(width, width)) - L)  # black top-hat


def ink_candidates(lab: np.ndarray, rule: InkRule, strength: float = 1.0) -> np.ndarray:
    """Pixels dark and violet enough (or plainly blue / green) to be ink: (H, W) bool.

    ``strength`` scales both thresholds (below 1: fainter pixels count).
    """
    width, _, _ = _scaled(rule, lab.shape)
    dark = strength * rule.min_darkening
    violet = strength * rule.min_violet
    cand = (_darkening(lab, width) >= dark) & (violet_shift(lab) >= violet)
    cand |= (lab[..., 1] <= -violet) | (lab[..., 2] <= -2 * violet)
    # lines one pixel wide are hairs (pen lines are wider at any scale this rule is used on)
    return np.asarray(ndimage.binary_opening(cand, np.ones((2, 2), bool)))


def line_components(
    candidates: np.ndarray,
    min_length: float,
    max_width: float,
    min_length_per_end: float = 0.0,
    min_length_per_branch: float = 0.0,
    join_gap: int = 3,
) -> np.ndarray:
    """Keep the connected components of ``candidates`` that are long thin lines: (H, W) bool.

    Pieces up to ``join_gap`` px apart are joined first. A component's length is its
    skeleton's pixel count, its width its area over that length, its ends the skeleton pixels
    with one neighbour and its branch points those with three or more: a pen line or circle
    has few of either for its length, a mesh of crossing hairs and skin texture many.
    """
    from skimage.morphology import skeletonize

    eight = np.ones((3, 3), bool)
    joined = ndimage.binary_closing(candidates, np.ones((join_gap, join_gap), bool)) | candidates
    labels, n = ndimage.label(joined, eight)
    if n == 0:
        return np.zeros(candidates.shape, bool)
    skeleton = skeletonize(joined)
    # neighbours + 1 of every skeleton pixel
    count = ndimage.convolve(skeleton.astype(np.uint8), eight.astype(np.uint8), mode="constant")
    idx = np.arange(1, n + 1)
    length = ndimage.sum_labels(skeleton, labels, idx)
    area = ndimage.sum_labels(joined, labels, idx)
    ends = ndimage.sum_labels(skeleton & (count == 2), labels, idx)
    branches = ndimage.sum_labels(skeleton & (count >= 4), labels, idx)
    ok = (length >= min_length) & (area <= max_width * np.maximum(length, 1))
    ok &= (length >= min_length_per_end * ends) & (length >= min_length_per_branch * branches)
    return np.asarray(np.concatenate([[False], ok])[labels] & candidates)


def ink_mask(rgb: np.ndarray, rule: InkRule = InkRule()) -> np.ndarray:
    """Where a photo shows pen / marker ink (see the module docstring for the rule).

    Args:
        rgb: (H, W, 3) uint8 photo.
        rule: thresholds.

    Returns:
        (H, W) bool, True on ink.
    """
    lab = rgb_to_lab(rgb)
    width, min_length, max_width = _scaled(rule, rgb.shape)
    gap = max(2, round(rule.join_gap * min(rgb.shape[:2]) / rule.reference_side))
    per_end, per_branch = rule.min_length_per_end, rule.min_length_per_branch
    lines = line_components(
        ink_candidates(lab, rule), min_length, max_width, per_end, per_branch, gap
    )
    if lines.mean() <= rule.min_fraction:  # specks: hair, texture or a stray tick
        return np.zeros(lines.shape, bool)
    if rule.extend <= 0:
        return lines
    # the fainter stretches of the lines, followed up to ``extend`` line widths from them
    faint = ink_candidates(lab, rule, strength=FAINT) | lines
    return np.asarray(ndimage.binary_dilation(lines, iterations=rule.extend * width, mask=faint))
