"""Which pixels of a photo are skin (where windows may go).

The rule, on 8-bit RGB:

1. a pixel is a skin candidate when red is its largest channel (skin, red AK, brown SK and dark
   naevi all have R >= G and R >= B, blue or green clothing and backgrounds do not), it has some
   colour (R - min(G, B) >= 8, which drops white and grey cloth, paper and glare), it is not very
   dark (max channel >= 35, which drops shadows and black backgrounds) and not saturated
   (not all channels >= 245);
2. holes are filled (whitish AK scale, hair, ink circles and glints inside skin stay skin), then
   an opening with a disk of ``min_size // 8`` px removes thin stray strands;
3. components smaller than ``min_size**2`` px (one window) are dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def skin_candidates(photo: np.ndarray) -> np.ndarray:
    """Step 1 of the rule: (H, W, 3) uint8 -> (H, W) bool."""
    r, g, b = photo[..., 0], photo[..., 1], photo[..., 2]
    low = np.minimum(g, b)
    reddest = (r >= g) & (r >= b)  # so the largest channel is r below
    coloured = r.astype(np.int16) - low >= 8
    lit = r >= 35
    saturated = np.minimum(r, low) >= 245
    return reddest & coloured & lit & ~saturated


def skin_mask(photo: np.ndarray, min_size: int) -> np.ndarray:
    """The documented skin rule: (H, W, 3) uint8 -> (H, W) bool."""
    mask = ndimage.binary_fill_holes(skin_candidates(photo))
    mask = morph(mask, "open", max(1, min_size // 8))
    mask = drop_small(mask, min_size * min_size)
    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


def morph(mask: np.ndarray, op: str, radius: int) -> np.ndarray:
    """Binary ``"open"`` or ``"close"`` with a disk; the photo's edge does not erode regions.

    Equal to scipy's ``binary_opening`` / ``binary_closing`` with ``skimage.morphology.disk``
    on the edge-padded mask, computed with Euclidean distance transforms: a pixel survives an
    erosion by the disk when the nearest pixel outside the mask is more than ``radius`` away
    (``x^2 + y^2 <= r^2`` is the disk), which costs the same for any radius."""
    if radius <= 0:
        return mask
    padded = np.pad(mask, radius, mode="edge")
    first, second = (_erode, _dilate) if op == "open" else (_dilate, _erode)
    out = second(first(padded, radius), radius)
    return np.asarray(out[radius:-radius, radius:-radius], dtype=bool)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion by disk(radius), pixels beyond the array counting as background."""
    inside = np.pad(mask, 1)  # the background border scipy's erosion assumes
    d2 = ndimage.distance_transform_edt(inside, return_distances=True) ** 2
    return np.asarray(d2[1:-1, 1:-1] > radius * radius + 0.5)  # squared distances are integers


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by disk(radius)."""
    if not mask.any():
        return mask
    d2 = ndimage.distance_transform_edt(~mask) ** 2
    return np.asarray(d2 <= radius * radius + 0.5)


def drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """``mask`` without its 8-connected components of fewer than ``min_area`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    return np.asarray(keep[labels], dtype=bool)
