"""One forward pass -> global-average-pooled features of every requested block."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from skintl.config import ConfigError
from skintl.encoders.taps import IMAGENET_MEAN, IMAGENET_STD, LayerTaps

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LayerTaps", "extract_features", "to_input"]

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


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"features.device is {device!r} but PyTorch sees no CUDA GPU here "
            f"(torch {torch.__version__}); set features.device to 'auto' or 'cpu'"
        )
    return torch.device(device)


@contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """Disables TF32 on CUDA while features are computed, so they equal fp32 on the CPU.

    Ampere and newer GPUs run fp32 convolutions in TF32 by default (10-bit mantissa), which
    moves pooled features by about 1e-3 relative; full fp32 keeps them within 1e-5.
    """
    if device.type != "cuda":
        yield
        return
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


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
            for s in tqdm(starts, desc=desc, unit="batch", disable=not progress):
                feats = taps(preprocess(patches[s : s + batch_size], input_size, dev))
                for layer, f in feats.items():
                    out[layer].append(f.float().cpu().numpy())
    finally:
        net.to("cpu")
    return {
        layer: np.concatenate(v) if v else np.empty((0, 0), np.float32) for layer, v in out.items()
    }
