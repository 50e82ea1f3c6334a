"""Lesion burden between two registered visits, and what changed (pure arrays in and out).

Both visits are compared in the BEFORE photo's frame at the bundle's scale: AFTER's maps are
warped through the registration. The burden of each visit is measured over the skin the two
photos share: skin (union the doctor's region, as in :mod:`skintl.scan.regions`) in BEFORE,
skin in the warped AFTER, and inside AFTER's frame. A lesion region (8-connected) of BEFORE is
*persisting* when at least :data:`MIN_OVERLAP` of its shared area is covered by AFTER's
lesions, else *cleared*; a region of AFTER is *new* when at most that share of it is covered by
BEFORE's lesions. In a persisting region, pixels lesion at one visit only are *receded* (BEFORE
only) or *grown* (AFTER only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from skintl.names import MIN_OVERLAP as MIN_OVERLAP

#: pixel classes of the change map (0: no lesion at either visit, or outside the shared skin)
CHANGE_CLASSES = ("persisting", "receded", "grown", "cleared", "new")


def frame_matrix(matrix: np.ndarray, scale_after: float, scale_before: float) -> np.ndarray:
    """A (3, 3) transform between original pixels -> the same between working pixels, with
    each photo resized by its scale (pixel centres map to pixel centres, as in a resize)."""

    def to_work(s: float) -> np.ndarray:
        return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1.0]])

    m = to_work(scale_before) @ matrix @ np.linalg.inv(to_work(scale_after))
    return np.asarray(m / m[2, 2])


def warp_into(arr: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (h, w) bool or int array of AFTER, seen in BEFORE's frame of ``shape``.

    Args:
        matrix: (3, 3) AFTER px (x, y) -> BEFORE px, at the arrays' own scales.

    Returns:
        (H, W) array of ``arr``'s dtype (nearest neighbour), 0 outside AFTER's frame.
    """
    from skimage.transform import ProjectiveTransform, warp

    inverse = ProjectiveTransform(np.linalg.inv(matrix))  # BEFORE px -> AFTER px
    out = warp(arr.astype(np.float64), inverse, output_shape=shape, order=0, cval=0.0,
               preserve_range=True)  # fmt: skip
    return np.asarray(out.round().astype(arr.dtype))


def footprint(
    matrix: np.ndarray, after_shape: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """(H, W) bool: the pixels of BEFORE's frame that AFTER's photo covers."""
    return warp_into(np.ones(after_shape, bool), matrix, shape)


@dataclass(frozen=True)
class Changes:
    """Region and pixel classes of one pair (module docstring).

    Attributes:
        before_labels, after_labels: (H, W) int regions of each visit inside the shared skin.
        before_class: (n_before,) "persisting" or "cleared"; after_class: (n_after,)
            "persisting" or "new".
        pixels: (H, W) uint8, 0 or 1 + the index of a :data:`CHANGE_CLASSES` entry.
    """

    before_labels: np.ndarray
    after_labels: np.ndarray
    before_class: np.ndarray
    after_class: np.ndarray
    pixels: np.ndarray

    def counts(self) -> dict[str, int]:
        """Regions per class: persisting (BEFORE's), cleared and new."""
        return {
            "regions_persisting": int((self.before_class == "persisting").sum()),
            "regions_cleared": int((self.before_class == "cleared").sum()),
            "regions_new": int((self.after_class == "new").sum()),
        }


def _covered(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(n,) share of each region of ``labels`` covered by the bool mask ``other``."""
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    hit = np.bincount(labels[other].ravel(), minlength=n + 1)[1:]
    return np.asarray(hit / np.maximum(area, 1))


def change_regions(
    before: np.ndarray, after: np.ndarray, shared: np.ndarray, min_overlap: float = MIN_OVERLAP
) -> Changes:
    """Classify the lesions of two visits, (H, W) bool each, inside ``shared`` (H, W) bool."""
    b, a = before & shared, after & shared
    eight = np.ones((3, 3))
    bl, _ = ndimage.label(b, structure=eight)
    al, _ = ndimage.label(a, structure=eight)
    b_keep = _covered(bl, a) >= min_overlap
    a_keep = _covered(al, b) > min_overlap
    b_class = np.where(b_keep, "persisting", "cleared")
    a_class = np.where(a_keep, "persisting", "new")
    pix = np.zeros(b.shape, np.uint8)
    in_p = np.isin(bl, np.flatnonzero(b_keep) + 1) | np.isin(al, np.flatnonzero(a_keep) + 1)
    code = {c: i + 1 for i, c in enumerate(CHANGE_CLASSES)}
    pix[in_p & b & a] = code["persisting"]
    pix[in_p & b & ~a] = code["receded"]
    pix[in_p & a & ~b] = code["grown"]
    pix[np.isin(bl, np.flatnonzero(~b_keep) + 1)] = code["cleared"]
    pix[np.isin(al, np.flatnonzero(~a_keep) + 1)] = code["new"]
    return Changes(bl, al, b_class, a_class, pix)


def burden_change(
    before: np.ndarray, after: np.ndarray, shared: np.ndarray, prefix: str = "pred"
) -> dict[str, Any]:
    """Burden (% of the shared skin) of each visit and its change, for (H, W) bool masks.

    Returns:
        ``{prefix}_burden_before_pct``, ``..._after_pct``, ``..._change_pct`` (after minus
        before, in percentage points) and ``..._relative_change_pct`` (the change in % of the
        burden before; NaN when there was none).
    """
    n = max(int(shared.sum()), 1)
    pb = 100.0 * float((before & shared).sum()) / n
    pa = 100.0 * float((after & shared).sum()) / n
    rel = 100.0 * (pa - pb) / pb if pb > 0 else float("nan")
    return {f"{prefix}_burden_before_pct": pb, f"{prefix}_burden_after_pct": pa,
            f"{prefix}_burden_change_pct": pa - pb,
            f"{prefix}_burden_relative_change_pct": rel}  # fmt: skip


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two (H, W) bool masks (NaN when both are empty)."""
    total = int(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else float("nan")
