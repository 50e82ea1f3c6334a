"""One forward pass -> global-average-pooled features of every requested block."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet
from tqdm import tqdm

from skintl.config import ConfigError
from skintl.encoders.backbones import LAYERS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerTaps(nn.Module):
    """Runs a ResNet once, up to the deepest requested block, and pools each requested block.

    Args:
        net: a torchvision ResNet (its ``fc`` and final pooling are never run).
        layers: blocks to tap, a subset of :data:`LAYERS`.
    """

    def __init__(self, net: ResNet, layers: Sequence[str]) -> None:
        super().__init__()
        unknown = [layer for layer in layers if layer not in LAYERS]
        if unknown:
            raise KeyError(f"unknown layers {unknown}; valid: {', '.join(LAYERS)}")
        self.net = net
        self.layers = [layer for layer in LAYERS if layer in layers]  # forward order

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) normalised images -> {layer: (B, C_layer)} pooled features."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        out = {}
        if "stem" in self.layers:
            out["stem"] = x.mean(dim=(2, 3))
        for name in LAYERS[1:]:
            if len(out) == len(self.layers):
                break  # deeper blocks are not needed
            x = getattr(n, name)(x)
            if name in self.layers:
                out[name] = x.mean(dim=(2, 3))
        return out


def preprocess(
    batch: np.ndarray, input_size: int | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, S, S) float32, ImageNet-normalised, channels_last.

    ``input_size`` resizes bilinearly (with antialiasing when shrinking). The uint8 batch moves
    to ``device`` first, so a GPU does the conversion.
    """
    # a copy: batches of the memory-mapped patches are read-only, which torch warns about
    x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(device, non_blocking=True)
    return to_input(x, input_size)


def to_input(x: torch.Tensor, input_size: int | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 tensor -> (B, 3, S, S) float32, ImageNet-normalised, channels_last,
    on ``x``'s device; :func:`preprocess` for numpy batches."""
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if input_size is not None and input_size != x.shape[-1]:
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
        )
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


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
    net: ResNet,
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
        layers: blocks to tap.
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
