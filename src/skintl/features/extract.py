"""One forward pass -> global-average-pooled features of every requested block."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet
from tqdm import tqdm

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


def preprocess(batch: np.ndarray, input_size: int | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, S, S) float32, ImageNet-normalised, channels_last.

    ``input_size`` resizes bilinearly (with antialiasing when shrinking).
    """
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    if input_size is not None and input_size != x.shape[-1]:
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
        )
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def extract_features(
    net: ResNet,
    patches: np.ndarray,
    layers: Sequence[str],
    batch_size: int = 256,
    input_size: int | None = None,
    progress: bool = True,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    """Pooled features of every requested layer from one pass over ``patches``.

    Args:
        net: backbone (put in eval mode here; its weights are not changed).
        patches: (N, H, W, 3) uint8 patches.
        layers: blocks to tap.
        batch_size: patches per forward pass.
        input_size: optional resize before the encoder.

    Returns:
        {layer: (N, C_layer) float32}.
    """
    taps = LayerTaps(net.eval(), layers).to(memory_format=torch.channels_last)
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in taps.layers}
    starts = range(0, len(patches), batch_size)
    for s in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        feats = taps(preprocess(patches[s : s + batch_size], input_size))
        for layer, f in feats.items():
            out[layer].append(f.float().numpy())
    return {
        layer: np.concatenate(v) if v else np.empty((0, 0), np.float32) for layer, v in out.items()
    }
