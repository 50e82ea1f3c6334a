"""Window probabilities of a photo in the three modes (pure arrays in, arrays out).

- exact: every window cut out and run through the encoder alone, as the patches in training;
- superpixel: the same, with windows centred on SLIC superpixels;
- dense: the encoder runs once over the (tiled) photo and each window's feature is pooled from
  the layer's map (:mod:`skintl.features.dense`). Use a bundle trained with
  ``features.mode: dense``; a patch-mode bundle in dense mode is warned about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from skintl.features.dense import (
    cell_features,
    geometry,
    inference_trunk,
    iter_window_features,
    tap_geometries,
)
from skintl.features.extract import exact_fp32, to_input
from skintl.scan.bundle import Bundle
from skintl.scan.windows import Windows

log = logging.getLogger(__name__)


def _exact_features(
    bundle: Bundle, padded: np.ndarray, win: Windows, batch: int, device: torch.device
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    view = np.lib.stride_tricks.sliding_window_view(padded, (bundle.size, bundle.size), (0, 1))
    size = bundle.meta.get("input_size")
    trunk = inference_trunk(bundle.trunk, device)
    for s in range(0, len(win), batch):
        idx = np.arange(s, min(s + batch, len(win)))
        # sliding_window_view puts the window axes last: (N, 3, P, P) -> (N, P, P, 3)
        cut = np.ascontiguousarray(view[win.ys[idx], win.xs[idx]].transpose(0, 2, 3, 1))
        x = to_input(torch.from_numpy(cut).to(device), size)
        yield idx, trunk(x).mean(dim=(2, 3)).float().cpu().numpy()


@torch.inference_mode()
def window_probabilities(
    bundle: Bundle,
    padded: np.ndarray,
    win: Windows,
    mode: str,
    device: str = "cpu",
    batch: int = 256,
    tile: int = 512,
) -> np.ndarray:
    """(N, K) class probabilities (``bundle.head.classes`` order) of every window.

    Args:
        padded: (H + 2 pad, W + 2 pad, 3) uint8 photo, reflect-padded by ``win.pad``.
    """
    from skintl.features.extract import resolve_device

    bundle.scan_mode(mode)  # a mode the bundle's classifier was not trained for is refused
    dev = resolve_device(device)
    out = np.zeros((len(win), len(bundle.head.classes)), np.float32)
    if len(win) == 0:
        return out
    classify: Callable[[np.ndarray], np.ndarray]
    if mode == "dense":
        # the head's first layer is applied to every cell before pooling (they commute), so
        # the pooling averages the layer's few outputs instead of the encoder's channels
        geo = geometry(bundle.trunk, bundle.stride, bundle.size)
        trunk = inference_trunk(bundle.trunk, dev)
        A, c = (torch.as_tensor(a, dtype=torch.float32) for a in bundle.head.first_layer())
        project = _affine_cells(A.to(dev), c.to(dev))
        # the photo itself and corners in its pixels: dense maps extend it one way for
        # training and scanning (features.dense.extend), whatever the scan's padding
        p = win.pad
        photo = padded[p : padded.shape[0] - p, p : padded.shape[1] - p]
        ys, xs = win.ys - p, win.xs - p
        chunks = iter_window_features(trunk, photo, geo, ys, xs, tile, dev, project)
        classify = bundle.head.proba_from_first
    else:
        chunks = _exact_features(bundle, padded, win, batch, dev)
        classify = bundle.head.predict_proba
    with exact_fp32(dev):
        for idx, feats in chunks:
            out[idx] = classify(feats)
    return out


def _affine_cells(A: torch.Tensor, c: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """(C, h, w) map -> (out, h, w): ``A f + c`` at every cell (A (out, C), c (out,))."""

    def project(fmap: torch.Tensor) -> torch.Tensor:
        cells = fmap.to(A.device).flatten(1)  # (C, h w)
        return (torch.addmm(c[:, None], A, cells)).view(-1, *fmap.shape[1:]).cpu()

    return project


@torch.inference_mode()
def cell_probabilities(
    bundle: Bundle, photo: np.ndarray, device: str = "cpu", tile: int | None = 512
) -> np.ndarray:
    """(H, W, 3) photo -> (h, w, K) class probabilities of every cell of a cell head's grid
    (h = ceil(H / cell stride)), through the feature path of its training cells
    (:func:`~skintl.features.dense.cell_features`)."""
    from skintl.features.extract import resolve_device

    bundle.scan_mode("cells")  # a bundle without a cell head is refused
    dev = resolve_device(device)
    geos = tap_geometries(bundle.trunk, bundle.cell_strides, bundle.size)
    A, c = (torch.as_tensor(a, dtype=torch.float32) for a in bundle.head.first_layer())
    with exact_fp32(dev):
        fmap = cell_features(inference_trunk(bundle.trunk, dev), photo, geos, tile, dev)
        z = _affine_cells(A.to(dev), c.to(dev))(fmap)  # (out, h, w): the head's first layer
    out, h, w = z.shape
    probs = bundle.head.proba_from_first(z.reshape(out, h * w).T.double().numpy())
    return probs.reshape(h, w, -1)
