"""Cut labelled square patches from annotated photos.

Rules (the study's, made explicit): on a grid with a given stride, a patch takes a lesion class
when at least ``min_lesion_fraction`` of its pixels lie in that class's region; it is healthy skin
when every one of its pixels keeps ``healthy_margin`` pixels (Euclidean) from every lesion; any
other patch is ambiguous and dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

HEALTHY_CODE = -1  # label code of a healthy patch in :func:`label_patches`
DROPPED_CODE = -2


@dataclass(frozen=True)
class PatchRule:
    size: int
    stride: int
    min_lesion_fraction: float
    healthy_margin: int


def _box_sums(binary: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Sum of ``binary`` over every ``size`` x ``size`` window on the stride grid: (gy, gx)."""
    ii = np.pad(binary.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = binary.shape
    ys = np.arange(0, h - size + 1, stride)
    xs = np.arange(0, w - size + 1, stride)
    y0, x0 = ys[:, None], xs[None, :]
    return ii[y0 + size, x0 + size] - ii[y0, x0 + size] - ii[y0 + size, x0] + ii[y0, x0]


def window_fractions(binary: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Share of True pixels of ``binary`` (H, W) in every grid patch: (gy, gx) float."""
    if binary.shape[0] < size or binary.shape[1] < size:
        return np.empty((0, 0))
    return _box_sums(binary, size, stride) / (size * size)


def grid_origins(h: int, w: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (ys, xs) of the patch grid that fits inside an (h, w) image."""
    return np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride)


def label_patches(label_map: np.ndarray, n_lesion_classes: int, rule: PatchRule) -> np.ndarray:
    """Label every grid patch of one image.

    Args:
        label_map: (H, W) int map, lesion class index >= 0 per lesion pixel, -1 elsewhere.
        n_lesion_classes: lesion class indices run over ``range(n_lesion_classes)``.
        rule: patch size, stride and labelling thresholds.

    Returns:
        (gy, gx) int array: a class index, :data:`HEALTHY_CODE` or :data:`DROPPED_CODE`.
    """
    h, w = label_map.shape
    if h < rule.size or w < rule.size:
        return np.empty((0, 0), dtype=np.int64)
    area = rule.size * rule.size
    out = np.full(
        [len(a) for a in grid_origins(h, w, rule.size, rule.stride)], DROPPED_CODE, np.int64
    )
    lesion = label_map >= 0
    if lesion.any():
        near = ndimage.distance_transform_edt(~lesion) <= rule.healthy_margin
    else:
        near = lesion
    out[_box_sums(near, rule.size, rule.stride) == 0] = HEALTHY_CODE
    for c in range(n_lesion_classes):
        frac = _box_sums(label_map == c, rule.size, rule.stride) / area
        # min_lesion_fraction > 0.5, so at most one class can pass
        out[frac >= rule.min_lesion_fraction] = c
    return out


def cut_patches(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Cut (N, size, size, C) patches with top-left corners ``(ys[i], xs[i])``."""
    if len(ys) == 0:
        return np.empty((0, size, size, image.shape[2]), dtype=image.dtype)
    view = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
    # sliding_window_view puts the window axes last: (H', W', C, size, size)
    return np.ascontiguousarray(view[ys, xs].transpose(0, 2, 3, 1))


def cap_per_class(labels: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most ``cap`` of each label (a seeded random subset), sorted."""
    keep = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if cap is not None and len(idx) > cap:
            idx = rng.choice(idx, size=cap, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
