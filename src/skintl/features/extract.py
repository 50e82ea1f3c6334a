"""One forward pass -> global-average-pooled features of every requested block."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skintl.device import exact_fp32, resolve_device
from skintl.encoders.taps import IMAGENET_MEAN, IMAGENET_STD, LayerTaps
from skintl.progress import progress as logged

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "LayerTaps", "exact_fp32", "extract_features",
    "resolve_device", "to_input",
]  # fmt: skip


def preprocess(
    batch: np.ndarray, input_size: int | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, S, S) float32 in [0, 1], channels_last (the encoder's
    taps and trunks normalise it for their arch).

    ``input_size`` resizes bilinearly (with antialiasing when shrinking). The uint8 batch moves
    to ``device`` first, so a GPU does the conversion.
    """
    # a copy: batches of the memory-mapped patches are read-only, which torch warns about
    x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(device, non_blocking=True)
    return to_input(x, input_size)


def to_input(x: torch.Tensor, input_size: int | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 tensor -> (B, 3, S, S) float32 in [0, 1], channels_last, on ``x``'s
    device; :func:`preprocess` for numpy batches. Normalisation is the first module of every
    :class:`~skintl.encoders.taps.LayerTaps` and trunk, so it follows the arch."""
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if input_size is not None and input_size != x.shape[-1]:
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def extract_features(
    net: nn.Module,
    patches: np.ndarray,
    layers: Sequence[str],
    batch_size: int = 256,
    input_size: int | None = None,
    progress: bool = True,
    desc: str = "features",
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Pooled features of every requested layer from one pass over ``patches``.

    Args:
        net: backbone (put in eval mode here; its weights are not changed).
        patches: (N, H, W, 3) uint8 patches.
        layers: taps (:func:`~skintl.encoders.backbones.layer_info`).
        batch_size: patches per forward pass.
        input_size: optional resize before the encoder.
        device: "cpu", "cuda", "cuda:N" or "auto". On CUDA the pass runs in full fp32 (TF32
            off) and the network is moved back to the CPU afterwards.

    Returns:
        {layer: (N, C_layer) float32}.
    """
    dev = resolve_device(device)
    taps = LayerTaps(net.eval(), layers).to(dev).to(memory_format=torch.channels_last)
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in taps.layers}
    starts = range(0, len(patches), batch_size)
    try:
        with exact_fp32(dev):
            for s in logged(starts, desc, "batch") if progress else starts:
                feats = taps(preprocess(patches[s : s + batch_size], input_size, dev))
                for layer, f in feats.items():
                    out[layer].append(f.float().cpu().numpy())
    finally:
        net.to("cpu")
    return {
        layer: np.concatenate(v) if v else np.empty((0, 0), np.float32) for layer, v in out.items()
    }
