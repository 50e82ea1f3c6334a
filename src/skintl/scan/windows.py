"""Where windows go, and how their probabilities become a map at photo resolution.

*Grid* placement (exact and dense modes): the photo is cut into ``stride x stride`` cells; a
cell that holds any skin gets one window centred on it, and every pixel of the cell takes that
window's probabilities. *Superpixel* placement: SLIC superpixels inside the skin, one window
centred on each, and every pixel of a superpixel takes its window's probabilities. Either way the
map is defined on exactly the skin mask.

Windows near the border reach outside the photo, so the photo is reflect-padded by ``pad`` px
(a multiple of the encoder stride, so dense feature cells stay aligned with the photo).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: window placements of ``skintl scan --mode``; ``cells`` classifies every cell of the layer's
#: map with a cell head (:mod:`skintl.scan.cells`) instead of windows
MODES = ("exact", "superpixel", "dense", "cells")
#: the feature mode a bundle's classifier must have been trained on to scan in each mode:
#: exact and superpixel windows are isolated patches, dense windows are pooled from the map,
#: cells are the map's own cells
FEATURE_MODE = {"exact": "patch", "superpixel": "patch", "dense": "dense", "cells": "cells"}
#: the mode a bundle scans in when none is asked for, by its feature mode
DEFAULT_MODE = {"patch": "exact", "dense": "dense", "cells": "cells"}


@dataclass
class Windows:
    """Top-left corners in the padded photo, and which pixels each window paints.

    Attributes:
        ys, xs: (N,) corners in the padded photo; pad: padding (px) on every side.
        owner: (H, W) int index of the window painting each pixel, -1 outside the skin.
    """

    ys: np.ndarray
    xs: np.ndarray
    pad: int
    owner: np.ndarray

    def __len__(self) -> int:
        return len(self.ys)


def padding(size: int, stride: int, enc_stride: int) -> int:
    """Reflect padding that fits every window: a multiple of ``enc_stride`` >= size/2 + stride."""
    return math.ceil((size / 2 + stride) / enc_stride) * enc_stride


def grid_windows(skin: np.ndarray, size: int, stride: int, enc_stride: int = 1) -> Windows:
    """One window per ``stride``-cell that holds skin: (H, W) bool -> :class:`Windows`."""
    h, w = skin.shape
    gy, gx = math.ceil(h / stride), math.ceil(w / stride)
    padded = np.zeros((gy * stride, gx * stride), bool)
    padded[:h, :w] = skin
    has_skin = padded.reshape(gy, stride, gx, stride).any(axis=(1, 3))
    cy, cx = np.nonzero(has_skin)
    pad = padding(size, stride, enc_stride)
    cell_id = np.full((gy, gx), -1, np.int64)
    cell_id[cy, cx] = np.arange(len(cy))
    owner = np.repeat(np.repeat(cell_id, stride, axis=0), stride, axis=1)[:h, :w]
    owner = np.where(skin, owner, -1)
    off = stride // 2 - size // 2 + pad
    return Windows(cy * stride + off, cx * stride + off, pad, owner)


def superpixel_windows(
    photo: np.ndarray, skin: np.ndarray, size: int, enc_stride: int = 1, area: int | None = None
) -> Windows:
    """One window centred on each SLIC superpixel of the skin (about ``area`` px each,
    default ``(size / 2)**2``), as in the original work."""
    from scipy import ndimage
    from skimage.segmentation import slic

    area = area or max(4, (size // 2) ** 2)
    n = max(1, int(skin.sum() // area))
    labels = slic(photo, n_segments=n, compactness=10, mask=skin, start_label=1)
    labels = np.where(skin, labels, 0)
    ids = np.unique(labels[labels > 0])
    cy, cx = (np.asarray(c) for c in zip(*ndimage.center_of_mass(skin, labels, ids), strict=True))
    lookup = np.full(int(labels.max()) + 1, -1, np.int64)
    lookup[ids] = np.arange(len(ids))
    pad = padding(size, 0, enc_stride)
    ys = np.round(cy).astype(np.int64) - size // 2 + pad
    xs = np.round(cx).astype(np.int64) - size // 2 + pad
    return Windows(ys, xs, pad, lookup[labels])


def paint(owner: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(H, W) owners and (N, K) window values -> (H, W, K) float32 map, NaN outside the skin."""
    # owner -1 picks the appended NaN row: one gather, no boolean mask over the photo
    table = np.vstack([values.astype(np.float32), np.full((1, values.shape[1]), np.nan)])
    return np.asarray(table[owner], np.float32)


def paint_cells(cells: np.ndarray, stride: int, skin: np.ndarray, how: str = "block") -> np.ndarray:
    """(h, w, K) cell values of a ``stride`` px grid -> (H, W, K) float32 map of the (H, W)
    ``skin`` mask's photo, NaN outside the skin. ``block``: each pixel takes its cell's values;
    ``bilinear``: interpolated between the cell centres (a smooth map whose outlines follow the
    probabilities rather than the grid; values at the centres unchanged)."""
    h, w, k = cells.shape
    if how == "block":
        cy, cx = (np.arange(n) // stride for n in skin.shape)
        owner = np.where(skin, cy[:, None] * w + cx[None, :], -1)
        return paint(owner, cells.reshape(h * w, k))
    if how != "bilinear":
        raise ValueError(f"unknown cell painting {how!r}; valid: block, bilinear")
    import torch
    import torch.nn.functional as F

    grid = torch.from_numpy(np.ascontiguousarray(cells, np.float32)).permute(2, 0, 1)[None]
    # align_corners=False puts input cell i's value at pixel (i + 0.5) stride - 0.5: its centre
    up = F.interpolate(grid, scale_factor=stride, mode="bilinear", align_corners=False)
    out = up[0, :, : skin.shape[0], : skin.shape[1]].permute(1, 2, 0).numpy()
    return np.where(skin[..., None], out, np.nan).astype(np.float32)
