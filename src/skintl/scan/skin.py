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
from skimage.morphology import disk


def skin_candidates(photo: np.ndarray) -> np.ndarray:
    """Step 1 of the rule: (H, W, 3) uint8 -> (H, W) bool."""
    rgb = photo.astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    reddest = (r >= g) & (r >= b)
    coloured = r - np.minimum(g, b) >= 8
    lit = rgb.max(axis=2) >= 35
    saturated = rgb.min(axis=2) >= 245
    return reddest & coloured & lit & ~saturated


def skin_mask(photo: np.ndarray, min_size: int) -> np.ndarray:
    """The documented skin rule: (H, W, 3) uint8 -> (H, W) bool."""
    mask = ndimage.binary_fill_holes(skin_candidates(photo))
    mask = morph(mask, "open", max(1, min_size // 8))
    mask = drop_small(mask, min_size * min_size)
    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


def morph(mask: np.ndarray, op: str, radius: int) -> np.ndarray:
    """Binary ``"open"`` or ``"close"`` with a disk; the photo's edge does not erode regions."""
    if radius <= 0:
        return mask
    se = disk(radius).astype(bool)
    padded = np.pad(mask, radius, mode="edge")
    f = ndimage.binary_opening if op == "open" else ndimage.binary_closing
    return np.asarray(f(padded, se)[radius:-radius, radius:-radius], dtype=bool)


def drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """``mask`` without its 8-connected components of fewer than ``min_area`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    return np.asarray(keep[labels], dtype=bool)
