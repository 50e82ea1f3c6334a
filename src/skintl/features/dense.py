"""Dense features: one encoder pass over a whole photo, window features pooled from its map.

A window's *dense* feature is the mean of the layer's feature map over the ``k x k`` cells
starting at cell ``round(y / s)``, ``round(x / s)`` (``s`` the layer's stride, ``k =
max(1, round(P / s))`` for a ``P`` px window at top-left ``(y, x)``). Unlike the feature of the
isolated patch, it sees the photo around the window (receptive field, no zero padding at the
patch border), so a classifier must be trained on dense features to be used on them
(``features.mode: dense``).

One feature path: every map is computed on the photo *extended* by :func:`extend` (reflected
by ``DenseGeometry.pad`` px on every side, and to a multiple of the stride), whether for
training patches (:func:`dense_patch_features`), for scanning or for the cells of
:func:`feature_map`, so a training patch's feature equals the scan's feature of the same window,
at the photo's borders too.

Large photos run in tiles whose origins are multiples of the layer's stride, each with a halo of
at least the layer's receptive-field radius: a tile's core cells then equal the one-pass map to
float tolerance, and memory stays bounded by the tile size.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from skintl.encoders.taps import truncated_backbone
from skintl.features.extract import to_input

__all__ = ["truncated_backbone"]

log = logging.getLogger(__name__)


def inference_trunk(trunk: nn.Sequential, device: str | torch.device = "cpu") -> nn.Module:
    """A copy of ``trunk`` for inference on ``device``: every batch norm folded into the
    convolution before it (torch.fx's ``fuse``; the same function to float tolerance, without a
    memory pass over each layer's activations, which costs most on whole photos) and weights in
    channels-last memory, the layout of :func:`~skintl.features.extract.to_input`."""
    net: nn.Module = copy.deepcopy(trunk).eval()
    try:
        net = fuse(net)
    except Exception as e:  # e.g. timm's TF "same" padding, which torch.fx cannot trace
        log.debug("batch norms not folded (%s: %s); running the trunk as it is", type(e), e)
    return net.to(device).to(memory_format=torch.channels_last)


def receptive_field(trunk: nn.Sequential) -> int:
    """Receptive field (input px) of the last output of ``trunk`` along its longest path.

    The residual branches (3x3 convolutions) dominate the shortcuts, so walking every
    convolution and pooling in order gives the exact field of a torchvision ResNet, and of
    timm's EfficientNets (whose shortcuts are identities).
    """
    rf, jump = 1, 1
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d | nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            if isinstance(m, nn.Conv2d) and m.in_channels != m.out_channels and k == 1 and s > 1:
                continue  # the shortcut's 1x1 projection: parallel, not in series
            rf += (k - 1) * jump
            jump *= s
    return rf


@dataclass(frozen=True)
class DenseGeometry:
    """How windows map to cells of one layer's feature map.

    Attributes:
        stride: input px per feature cell; size: window size in px; halo: context px around a
        tile, a multiple of ``stride`` of at least half the receptive field.
    """

    stride: int
    size: int
    halo: int

    @property
    def pad(self) -> int:
        """Reflection (px) around a photo before its pass: the least multiple of the stride
        that holds a whole window beyond each edge."""
        return math.ceil(self.size / self.stride) * self.stride

    @property
    def k(self) -> int:
        """Cells per window side."""
        return max(1, round(self.size / self.stride))

    def cell(self, px: np.ndarray) -> np.ndarray:
        """First cell of windows whose top-left corner is at ``px`` (input px)."""
        return np.floor(np.asarray(px) / self.stride + 0.5).astype(np.int64)


def geometry(trunk: nn.Sequential, stride: int, size: int) -> DenseGeometry:
    radius = receptive_field(trunk) // 2 + stride
    return DenseGeometry(stride, size, math.ceil(radius / stride) * stride)


def extend(photo: np.ndarray, geo: DenseGeometry) -> np.ndarray:
    """(H, W, 3) -> the photo every dense map is computed on: reflected by ``geo.pad`` px on
    each side, then at the bottom and right up to a multiple of the stride, so every stride-2
    convolution of a tile or of the whole photo sees an even size and TensorFlow-style "same"
    padding (timm's ``tf_`` models) puts its cells on one grid."""
    p, s = geo.pad, geo.stride
    h, w = photo.shape[:2]
    eh, ew = (-(h + 2 * p)) % s, (-(w + 2 * p)) % s
    return np.pad(photo, ((p, p + eh), (p, p + ew), (0, 0)), mode="reflect")


def _forward(trunk: nn.Module, photo: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (C, H', W') float32 feature map on the CPU."""
    x = torch.from_numpy(np.array(photo, dtype=np.uint8)).to(device)[None]  # writable copy
    return trunk(to_input(x))[0].float().cpu()


@torch.inference_mode()
def feature_map(
    trunk: nn.Module,
    photo: np.ndarray,
    geo: DenseGeometry,
    tile: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The layer's map of a whole photo's cells: (C, ceil(H / s), ceil(W / s)), cell ``(i, j)``
    covering the photo's pixels from ``(i s, j s)``, computed on :func:`extend` of the photo.

    Args:
        trunk: :func:`truncated_backbone`; photo: (H, W, 3) uint8.
        tile: core size in px (rounded up to a multiple of the stride); None: one pass.
    """
    h, w = (math.ceil(n / geo.stride) for n in photo.shape[:2])
    full = _extended_map(trunk, extend(photo, geo), geo, tile, torch.device(device))
    o = geo.pad // geo.stride
    return full[:, o : o + h, o : o + w]


def _extended_map(
    trunk: nn.Module, big: np.ndarray, geo: DenseGeometry, tile: int | None, dev: torch.device
) -> torch.Tensor:
    """(C, H' / s, W' / s) map of an already extended photo, in one pass or tile by tile."""
    if tile is None:
        return _forward(trunk, big, dev)
    chunks = list(_tiles(trunk, big, geo, tile, dev, extra_cells=0))
    c = chunks[0][2].shape[0]
    out = torch.empty((c, *(n // geo.stride for n in big.shape[:2])))
    for cy, cx, core in chunks:
        out[:, cy : cy + core.shape[1], cx : cx + core.shape[2]] = core
    return out


def _tiles(
    trunk: nn.Module,
    photo: np.ndarray,
    geo: DenseGeometry,
    tile: int,
    device: torch.device,
    extra_cells: int,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(cell_y, cell_x, map)`` per tile: the exact map of the tile's core cells plus
    ``extra_cells`` beyond its bottom and right edges (clipped to the photo)."""
    s = geo.stride
    t = math.ceil(tile / s) * s
    h, w = photo.shape[:2]
    hc, wc = math.ceil(h / s), math.ceil(w / s)
    for y0 in range(0, h, t):
        for x0 in range(0, w, t):
            cy, cx = y0 // s, x0 // s
            ny, nx = min(t // s + extra_cells, hc - cy), min(t // s + extra_cells, wc - cx)
            iy0, ix0 = max(0, y0 - geo.halo), max(0, x0 - geo.halo)
            iy1 = min(h, (cy + ny) * s + geo.halo)
            ix1 = min(w, (cx + nx) * s + geo.halo)
            fmap = _forward(trunk, photo[iy0:iy1, ix0:ix1], device)
            oy, ox = cy - iy0 // s, cx - ix0 // s
            yield cy, cx, fmap[:, oy : oy + ny, ox : ox + nx]


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sums of every k x k box of (B, C, H, W), one axis at a time (2k adds a cell, not k^2)."""
    x = F.avg_pool2d(x, (k, 1), stride=1, divisor_override=1)
    return F.avg_pool2d(x, (1, k), stride=1, divisor_override=1)


def _pool_at(fmap: torch.Tensor, k: int, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """Mean of ``fmap`` (C, h, w) over the k x k cells at (cy, cx), clipped to the map."""
    h, w = fmap.shape[1:]
    pad = (0, k, 0, k)  # windows at the bottom/right edge: mean over the cells that exist
    ones = torch.ones((1, 1, h, w))
    sums = _box_sum(F.pad(fmap[None], pad), k)[0]
    counts = _box_sum(F.pad(ones, pad), k)[0, 0]
    cy, cx = np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)
    ty, tx = torch.from_numpy(cy), torch.from_numpy(cx)
    return (sums[:, ty, tx] / counts[ty, tx]).T.contiguous().numpy()  # (N, C)


@torch.inference_mode()
def iter_window_features(
    trunk: nn.Module,
    photo: np.ndarray,
    geo: DenseGeometry,
    ys: np.ndarray,
    xs: np.ndarray,
    tile: int | None = 512,
    device: str | torch.device = "cpu",
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Dense features of windows with top-left corners ``(ys[i], xs[i])`` in the photo's own
    pixels (negative, or past the edge, for windows that reach outside it), tile by tile.

    The one function that computes a window's dense feature, for training and for scanning.
    Yields ``(indices, features)`` with features (n, C) float32, so a caller can classify them
    and drop them before the next tile (bounded memory on 20+ megapixel photos). ``project``,
    an affine map of each cell's features ((C, h, w) -> (C', h, w)), is applied before the
    pooling, which it commutes with; the features are then (n, C'). Cells of a window beyond
    the extended photo are left out of its mean.
    """
    dev = torch.device(device)
    big = extend(photo, geo)
    hc, wc = (n // geo.stride for n in big.shape[:2])
    cy = np.clip(geo.cell(np.asarray(ys) + geo.pad), 0, hc - 1)
    cx = np.clip(geo.cell(np.asarray(xs) + geo.pad), 0, wc - 1)
    if tile is None:
        fmap = _forward(trunk, big, dev)
        fmap = project(fmap) if project else fmap
        yield np.arange(len(ys)), _pool_at(fmap, geo.k, cy, cx)
        return
    t = math.ceil(tile / geo.stride)
    for ty, tx, fmap in _tiles(trunk, big, geo, tile, dev, extra_cells=geo.k):
        inside = (cy >= ty) & (cy < ty + t) & (cx >= tx) & (cx < tx + t)
        idx = np.flatnonzero(inside)
        if len(idx):
            fmap = project(fmap) if project else fmap
            yield idx, _pool_at(fmap, geo.k, cy[idx] - ty, cx[idx] - tx)


def window_features(
    trunk: nn.Module,
    photo: np.ndarray,
    geo: DenseGeometry,
    ys: np.ndarray,
    xs: np.ndarray,
    tile: int | None = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """All of :func:`iter_window_features` as one (N, C) float32 array in window order."""
    out: np.ndarray | None = None
    for idx, f in iter_window_features(trunk, photo, geo, ys, xs, tile, device):
        if out is None:
            out = np.empty((len(ys), f.shape[1]), np.float32)
        out[idx] = f
    if out is None:
        return np.empty((0, 0), np.float32)
    return out


#: version of the pooling rule above; part of the features fingerprint in dense mode
DENSE_RULE = "reflect-extended-round-origin-k-cells-v2"


def dense_patch_features(
    net: nn.Module,
    arch_strides: dict[str, int],
    photos: list[str],
    image_idx: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    size: int,
    layers: list[str],
    read_photo: Callable[[str], np.ndarray],
    tile: int | None = 512,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Dense features of training patches: every patch of one photo from one pass over it.

    Args:
        net: backbone; arch_strides: layer -> stride of its architecture.
        photos: photo paths; image_idx: (N,) index into ``photos`` of each patch.
        ys, xs: (N,) top-left corners of the patches in their photos; size: patch size (px).
        read_photo: path -> (H, W, 3) uint8.

    Returns:
        {layer: (N, C_layer) float32}, rows in patch order.
    """
    from tqdm import tqdm

    from skintl.features.extract import exact_fp32, resolve_device

    dev = resolve_device(device)
    cut = {layer: truncated_backbone(net, layer) for layer in layers}
    geos = {layer: geometry(cut[layer], arch_strides[layer], size) for layer in layers}
    trunks = {layer: inference_trunk(cut[layer], dev) for layer in layers}
    out: dict[str, np.ndarray] = {}
    with exact_fp32(dev):
        for i in tqdm(np.unique(image_idx), desc="dense features", unit="photo",
                      disable=not progress):  # fmt: skip
            rows = np.flatnonzero(image_idx == i)
            photo = read_photo(photos[i])
            for layer in layers:
                f = window_features(
                    trunks[layer], photo, geos[layer], ys[rows], xs[rows], tile, dev
                )
                if layer not in out:
                    out[layer] = np.zeros((len(image_idx), f.shape[1]), np.float32)
                out[layer][rows] = f
    return out
