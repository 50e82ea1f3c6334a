"""Pen / marker ink on clinical photos: a colour-and-shape rule, arrays in, arrays out.

Why: in PAD-UFES-20 many actinic-keratosis photos have the lesion circled with a marker pen and
almost no seborrheic-keratosis photo has, so a classifier can learn "ink means AK". On the
300 px photos the marks are faint, thin violet / pinkish-grey lines, not saturated strokes, so a
fixed-hue rule finds nothing; this rule is relative to each photo's own skin colour.

The rule (CIELAB, lengths in px of a photo whose short side is ``reference_side`` px and scaled
with the photo):

1. The photo's skin colour is the median (a*, b*) of all its pixels. ``violet`` is each pixel's
   (a*, b*) projected on the direction 90 degrees clockwise of it (from skin's orange towards
   red-violet / blue): a darker shade of the skin (shadow, hair, pigment) keeps the skin's hue
   and scores about 0 there; violet and blue ink scores high.
2. A pixel is an ink candidate when it is at least ``min_darkening`` L* darker than its
   neighbourhood (a black top-hat of L* with a ``line_width`` square: only lines narrower than
   that count) and its ``violet`` exceeds the photo's median by ``min_violet``. Clearly green or
   blue pixels (a* below ``-min_violet`` or b* below ``-2 * min_violet``; skin and its lesions are
   never there) are candidates whatever their darkness.
3. Candidates are joined across one-pixel gaps and kept per connected component only when the
   component is a long thin line: skeleton length at least ``min_length`` and mean width
   (area / skeleton length) at most ``max_width``. Compact pigment blobs are too wide, short hairs
   and skin creases too short.

Known failure cases (found on PAD-UFES-20's ACK and SEK photos; see the README):
- Black or brown marker is not found: by colour it is a dark hair; only violet / blue / green
  ink is.
- Ink drawn over a reddish or violet lesion has little colour contrast and may be found only in
  part; very faint, broken circles may fall apart into pieces shorter than ``min_length``.
- Long dark hairs lying over a red lesion, violet veins and dark crusted lesion borders can pass
  both tests and are then flagged as ink (false positives).
- The skin colour is the photo's median, so a photo that is mostly lesion or background
  (clothing, hair) has a shifted reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: bump when the rule's code changes what it finds, so that every manifest is recomputed
INK_RULE_VERSION = 1


@dataclass(frozen=True)
class InkRule:
    """Thresholds of :func:`ink_mask`; lengths in px at a short side of ``reference_side`` px."""

    min_darkening: float = 8.0
    min_violet: float = 5.0
    line_width: int = 9
    min_length: int = 30
    max_width: float = 10.0
    min_length_per_end: float = 18.0
    grow: float = 0.85
    join_gap: int = 5
    reference_side: int = 300


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an (H, W, 3) uint8 image: (H, W, 3) float32 L*, a*, b*."""
    from skimage.color import rgb2lab

    return np.asarray(rgb2lab(rgb), dtype=np.float32)


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


def ink_candidates(lab: np.ndarray, rule: InkRule) -> np.ndarray:
    """Pixels dark and violet enough (or plainly blue / green) to be ink: (H, W) bool.

    Hysteresis: pixels past ``grow`` times the thresholds count when they touch one past the
    full ones, so a faint stretch of a pen line stays joined to its clearer parts.
    """
    width, _, _ = _scaled(rule, lab.shape)
    L = lab[..., 0]
    darkening = ndimage.grey_closing(L, size=(width, width)) - L  # thin dark lines only
    violet = violet_shift(lab)
    strong = (darkening >= rule.min_darkening) & (violet >= rule.min_violet)
    weak = (darkening >= rule.grow * rule.min_darkening) & (violet >= rule.grow * rule.min_violet)
    marker = (lab[..., 1] <= -rule.min_violet) | (lab[..., 2] <= -2 * rule.min_violet)
    strong |= marker
    weak |= marker
    labels, n = ndimage.label(weak, np.ones((3, 3), bool))
    seeded = np.zeros(n + 1, bool)
    seeded[np.unique(labels[strong])] = True
    seeded[0] = False
    # lines one pixel wide are hairs (pen lines are wider at any scale this rule is used on)
    return np.asarray(ndimage.binary_opening(seeded[labels], np.ones((2, 2), bool)))


def line_components(
    candidates: np.ndarray,
    min_length: float,
    max_width: float,
    min_length_per_end: float = 0.0,
    join_gap: int = 3,
) -> np.ndarray:
    """Keep the connected components of ``candidates`` that are long thin lines: (H, W) bool.

    A component's length is its skeleton's pixel count, its width its area over that length,
    and its ends the skeleton pixels with one neighbour: a pen line or circle has few ends for
    its length, a mesh of crossing hairs many.
    """
    from skimage.morphology import skeletonize

    eight = np.ones((3, 3), bool)
    joined = ndimage.binary_closing(candidates, np.ones((join_gap, join_gap), bool)) | candidates
    labels, n = ndimage.label(joined, eight)
    if n == 0:
        return np.zeros(candidates.shape, bool)
    skeleton = skeletonize(joined)
    sk8 = skeleton.astype(np.uint8)
    neighbours = ndimage.convolve(sk8, np.ones((3, 3), np.uint8), mode="constant")
    idx = np.arange(1, n + 1)
    length = ndimage.sum_labels(skeleton, labels, idx)
    area = ndimage.sum_labels(joined, labels, idx)
    ends = ndimage.sum_labels(skeleton & (neighbours == 2), labels, idx)
    ok = (length >= min_length) & (area <= max_width * np.maximum(length, 1))
    ok &= length >= min_length_per_end * ends
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
    _, min_length, max_width = _scaled(rule, rgb.shape)
    gap = max(2, round(rule.join_gap * min(rgb.shape[:2]) / rule.reference_side))
    cand = ink_candidates(lab, rule)
    return line_components(cand, min_length, max_width, rule.min_length_per_end, gap)
