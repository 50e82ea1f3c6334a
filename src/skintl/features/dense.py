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

from skintl.encoders.taps import TapMaps, truncated_backbone
from skintl.features.extract import to_input

__all__ = ["truncated_backbone"]

log = logging.getLogger(__name__)


def inference_trunk(trunk: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
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


def receptive_field(trunk: nn.Module) -> int:
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
        """Reflection (px) around a photo before its pass: the least multiple of
        :func:`grid_multiple` that holds a whole window beyond each edge (the same for every tap
        of an arch, so taps computed together and alone see the same extended photo)."""
        m = grid_multiple(self.stride)
        return math.ceil(self.size / m) * m

    @property
    def k(self) -> int:
        """Cells per window side."""
        return max(1, round(self.size / self.stride))

    def cell(self, px: np.ndarray) -> np.ndarray:
        """First cell of windows whose top-left corner is at ``px`` (input px)."""
        return np.floor(np.asarray(px) / self.stride + 0.5).astype(np.int64)


def grid_multiple(stride: int) -> int:
    """Extended photos, tiles and their halos are multiples of this many px (32, the deepest
    stride of the supported archs, or the tap's stride where larger)."""
    return max(32, stride)


def geometry(trunk: nn.Module, stride: int, size: int) -> DenseGeometry:
    radius = receptive_field(trunk) // 2 + stride
    return DenseGeometry(stride, size, math.ceil(radius / stride) * stride)


def tap_geometries(
    trunk: nn.Module, strides: dict[str, int], size: int
) -> dict[str, DenseGeometry]:
    """The geometry of every tap of a :class:`~skintl.encoders.taps.TapMaps` trunk: each tap's
    stride, and the halo of the deepest (the trunk's receptive field), which is exact for every
    shallower tap too."""
    return {tap: geometry(trunk, s, size) for tap, s in strides.items()}


def extend(photo: np.ndarray, geo: DenseGeometry) -> np.ndarray:
    """(H, W, 3) -> the photo every dense map is computed on: reflected by ``geo.pad`` px on
    each side, then at the bottom and right up to a multiple of :func:`grid_multiple`, so every
    stride-2 convolution of a tile or of the whole photo sees an even size and TensorFlow-style
    "same" padding (timm's ``tf_`` models) puts its cells on one grid."""
    p, m = geo.pad, grid_multiple(geo.stride)
    h, w = photo.shape[:2]
    eh, ew = (-(h + 2 * p)) % m, (-(w + 2 * p)) % m
    return np.pad(photo, ((p, p + eh), (p, p + ew), (0, 0)), mode="reflect")


Maps = dict[str, torch.Tensor]


def _forward(trunk: nn.Module, photo: np.ndarray, device: torch.device) -> Maps:
    """(H, W, 3) uint8 -> {tap: (C, H / s, W / s)} float32 maps on the CPU; a trunk with one
    output (:func:`truncated_backbone`) gives its map under the name ``""``."""
    x = torch.from_numpy(np.array(photo, dtype=np.uint8)).to(device)[None]  # writable copy
    out = trunk(to_input(x))
    maps = out if isinstance(out, dict) else {"": out}
    return {tap: m[0].float().cpu() for tap, m in maps.items()}


@dataclass(frozen=True)
class _Tile:
    """A tile's core (px of the extended photo, from ``y0, x0``, ``t`` px square), the input
    crop's origin ``iy0, ix0`` and the maps of that crop."""

    y0: int
    x0: int
    t: int
    iy0: int
    ix0: int
    maps: Maps


def _tiles(
    trunk: nn.Module, big: np.ndarray, geos: dict[str, DenseGeometry], tile: int,
    extra: int, device: torch.device,
) -> Iterator[_Tile]:  # fmt: skip
    """Maps of ``big`` (an extended photo) tile by tile: cores of ``tile`` px (a multiple of the
    deepest stride), each run with a halo of the largest receptive-field radius, and ``extra``
    px beyond its bottom and right, so every cell a window starting in the core pools is exact
    (equal to the one-pass map to float tolerance)."""
    m = max(grid_multiple(g.stride) for g in geos.values())
    t = math.ceil(tile / m) * m
    halo = math.ceil(max(g.halo for g in geos.values()) / m) * m
    extra = math.ceil(extra / m) * m
    h, w = big.shape[:2]
    for y0 in range(0, h, t):
        for x0 in range(0, w, t):
            iy0, ix0 = max(0, y0 - halo), max(0, x0 - halo)
            iy1, ix1 = min(h, y0 + t + extra + halo), min(w, x0 + t + extra + halo)
            yield _Tile(y0, x0, t, iy0, ix0, _forward(trunk, big[iy0:iy1, ix0:ix1], device))


@torch.inference_mode()
def tap_maps(
    trunk: nn.Module,
    photo: np.ndarray,
    geos: dict[str, DenseGeometry],
    tile: int | None = None,
    device: str | torch.device = "cpu",
) -> Maps:
    """Every tap's map of a whole photo's cells from one pass: ``{tap: (C, ceil(H / s),
    ceil(W / s))}``, cell ``(i, j)`` of a tap of stride ``s`` covering the photo's pixels from
    ``(i s, j s)``, computed on :func:`extend` of the photo.

    Args:
        trunk: :class:`~skintl.encoders.taps.TapMaps` of ``geos``' taps, or a one-tap
            :func:`truncated_backbone` with ``geos`` keyed ``""``; photo: (H, W, 3) uint8.
        tile: core size in px (rounded up to a multiple of the deepest stride); None: one pass.
    """
    (pad,) = {g.pad for g in geos.values()}
    big = extend(photo, next(iter(geos.values())))
    dev = torch.device(device)

    def crop(tap: str, fmap: torch.Tensor) -> torch.Tensor:
        s = geos[tap].stride
        h, w = (math.ceil(n / s) for n in photo.shape[:2])
        return fmap[:, pad // s : pad // s + h, pad // s : pad // s + w]

    if tile is None:
        return {tap: crop(tap, m) for tap, m in _forward(trunk, big, dev).items()}
    full: Maps = {}
    for tl in _tiles(trunk, big, geos, tile, 0, dev):
        for tap, fmap in tl.maps.items():
            s = geos[tap].stride
            if tap not in full:
                full[tap] = torch.empty((fmap.shape[0], *(n // s for n in big.shape[:2])))
            cy, cx, n = tl.y0 // s, tl.x0 // s, tl.t // s
            oy, ox = cy - tl.iy0 // s, cx - tl.ix0 // s
            core = fmap[:, oy : oy + n, ox : ox + n]
            full[tap][:, cy : cy + core.shape[1], cx : cx + core.shape[2]] = core
    return {tap: crop(tap, m) for tap, m in full.items()}


def feature_map(
    trunk: nn.Module,
    photo: np.ndarray,
    geo: DenseGeometry,
    tile: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The layer's map of a whole photo's cells, (C, ceil(H / s), ceil(W / s)): :func:`tap_maps`
    of a one-tap :func:`truncated_backbone`."""
    return tap_maps(trunk, photo, {"": geo}, tile, device)[""]


def cell_grid_maps(maps: Maps, strides: dict[str, int], shape: tuple[int, int]) -> torch.Tensor:
    """Taps' maps stacked on the grid of the finest stride ``g``: (sum C, ceil(H / g),
    ceil(W / g)) for an (H, W) photo. A cell of a coarser tap (stride ``r g``) covers ``r x r``
    grid cells, each of which takes its features (strides of one arch divide each other)."""
    g = min(strides[t] for t in maps)
    h, w = (math.ceil(n / g) for n in shape)
    parts = []
    for tap, fmap in maps.items():
        r = strides[tap] // g
        if r * g != strides[tap]:
            raise ValueError(f"tap {tap!r}: stride {strides[tap]} is not a multiple of {g}")
        iy, ix = torch.arange(h) // r, torch.arange(w) // r
        parts.append(fmap[:, iy][:, :, ix])
    return torch.cat(parts)


def cell_features(
    trunk: nn.Module,
    photo: np.ndarray,
    geos: dict[str, DenseGeometry],
    tile: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The one function that computes a photo's cell features, for a cell head's training cells
    and for its scans: every tap of ``trunk`` (:class:`~skintl.encoders.taps.TapMaps`) from one
    pass (:func:`tap_maps`), stacked in ``geos`` order on the finest tap's grid
    (:func:`cell_grid_maps`): (sum C, ceil(H / g), ceil(W / g))."""
    maps = tap_maps(trunk, photo, geos, tile, device)
    ordered = {tap: maps[tap] for tap in geos}
    return cell_grid_maps(ordered, {t: g.stride for t, g in geos.items()}, photo.shape[:2])


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
def iter_tap_features(
    trunk: nn.Module,
    photo: np.ndarray,
    geos: dict[str, DenseGeometry],
    ys: np.ndarray,
    xs: np.ndarray,
    tile: int | None = 512,
    device: str | torch.device = "cpu",
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Dense features of windows with top-left corners ``(ys[i], xs[i])`` in the photo's own
    pixels (negative, or past the edge, for windows that reach outside it), for every tap of
    ``trunk`` (:class:`~skintl.encoders.taps.TapMaps`, or one tap under ``""``), tile by tile.

    The one function that computes a window's dense feature, for training (every tap from one
    pass) and for scanning (one tap). Yields ``(indices, {tap: (n, C) float32})``, so a caller
    can classify them and drop them before the next tile (bounded memory on 20+ megapixel
    photos). ``project``, an affine map of each cell's features ((C, h, w) -> (C', h, w)), is
    applied before the pooling, which it commutes with. Cells of a window beyond the extended
    photo are left out of its mean.
    """
    dev = torch.device(device)
    (pad,) = {g.pad for g in geos.values()}
    big = extend(photo, next(iter(geos.values())))
    yy, xx = np.asarray(ys) + pad, np.asarray(xs) + pad
    cells = {tap: (g.cell(yy), g.cell(xx)) for tap, g in geos.items()}

    def pooled(maps: Maps, idx: np.ndarray, oy: int, ox: int) -> dict[str, np.ndarray]:
        out = {}
        for tap, g in geos.items():
            fmap = project(maps[tap]) if project else maps[tap]
            cy, cx = cells[tap]
            out[tap] = _pool_at(fmap, g.k, cy[idx] - oy // g.stride, cx[idx] - ox // g.stride)
        return out

    if tile is None:
        yield np.arange(len(yy)), pooled(_forward(trunk, big, dev), np.arange(len(yy)), 0, 0)
        return
    extra = max(g.size + 2 * g.stride for g in geos.values())
    # each window goes to the tile holding its corner (clipped to the extended photo)
    ay, ax = np.clip(yy, 0, big.shape[0] - 1), np.clip(xx, 0, big.shape[1] - 1)
    for tl in _tiles(trunk, big, geos, tile, extra, dev):
        inside = (ay // tl.t == tl.y0 // tl.t) & (ax // tl.t == tl.x0 // tl.t)
        idx = np.flatnonzero(inside)
        if len(idx):
            yield idx, pooled(tl.maps, idx, tl.iy0, tl.ix0)


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
    """:func:`iter_tap_features` of a one-tap trunk (:func:`truncated_backbone`): yields
    ``(indices, (n, C) features)``."""
    for idx, feats in iter_tap_features(trunk, photo, {"": geo}, ys, xs, tile, device, project):
        yield idx, feats[""]


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
DENSE_RULE = "reflect-extended-32-round-origin-k-cells-v3"


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
    """Dense features of training patches: every tap of every patch of one photo from one
    pass over it (tile by tile on large photos), by :func:`iter_tap_features`.

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
    geos = {t: geometry(truncated_backbone(net, t), arch_strides[t], size) for t in layers}
    trunk = inference_trunk(TapMaps(net, layers), dev)  # every tap from one pass
    out: dict[str, np.ndarray] = {}
    with exact_fp32(dev):
        for i in tqdm(np.unique(image_idx), desc="dense features", unit="photo",
                      disable=not progress):  # fmt: skip
            rows = np.flatnonzero(image_idx == i)
            photo = read_photo(photos[i])
            chunks = iter_tap_features(trunk, photo, geos, ys[rows], xs[rows], tile, dev)
            for idx, feats in chunks:
                for layer, f in feats.items():
                    if layer not in out:
                        out[layer] = np.zeros((len(image_idx), f.shape[1]), np.float32)
                    out[layer][rows[idx]] = f
    return out
