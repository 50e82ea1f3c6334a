"""Skin-suited augmentations: uint8 ``(H, W, 3)`` patches -> normalised float ``(3, S, S)`` tensors.

SimCLR's recipe (random resized crop, flip, colour jitter, grayscale, blur) with two changes for
skin. Colour is diagnostic (erythema in AK, brown pigment in SK), so the colour jitter is mild by
default (``color_strength=0.25`` of SimCLR's strength 1.0) and grayscale is off. Lesions have
no canonical orientation, so vertical flips and 90-degree rotations are added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from skintl.encoders.taps import IMAGENET_MEAN, IMAGENET_STD

Transform = Callable[[np.ndarray], Tensor]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation hyper-parameters.

    Attributes:
        size: output side ``S`` in pixels.
        scale: area range of the random resized crop (MoCo v2 uses (0.2, 1.0)).
        color_strength: SimCLR's colour-distortion strength ``s``: jitter of brightness,
            contrast and saturation ``0.8 s`` and of hue ``0.2 s``; 0 disables it.
        color_p: probability of applying the colour jitter (SimCLR: 0.8).
        grayscale_p: probability of converting to grey (SimCLR: 0.2; off for skin).
        blur_p: probability of a Gaussian blur with sigma in [0.1, 2] and a kernel of ~10% of
            ``size`` (SimCLR: 0.5).
        rotate90: random multiples of 90 degrees and vertical flips.
        mean, std: input normalisation of the backbone's weights (set from the arch by
            :func:`skintl.pretrain.train.pretrain`).
    """

    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    color_strength: float = 0.25
    color_p: float = 0.8
    grayscale_p: float = 0.0
    blur_p: float = 0.5
    rotate90: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


class RandomRot90:
    """Rotate a ``(..., H, W)`` tensor by a uniformly random multiple of 90 degrees."""

    def __call__(self, x: Tensor) -> Tensor:
        return torch.rot90(x, k=int(torch.randint(4, ()).item()), dims=(-2, -1))


def _blur_kernel(size: int) -> int:
    k = max(3, round(0.1 * size))
    return k if k % 2 == 1 else k + 1


def view_transform(cfg: AugmentConfig | None = None) -> Transform:
    """One random view: uint8 ``(H, W, 3)`` array -> float32 ``(3, S, S)``, normalised by
    ``cfg.mean`` / ``cfg.std``."""
    cfg = cfg or AugmentConfig()
    s = cfg.color_strength
    steps: list[Callable[..., object]] = [
        v2.ToImage(),
        v2.RandomResizedCrop(cfg.size, scale=cfg.scale, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if cfg.rotate90:
        steps.append(v2.RandomVerticalFlip())
    if s > 0 and cfg.color_p > 0:
        jitter = v2.ColorJitter(
            brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s
        )
        steps.append(v2.RandomApply([jitter], p=cfg.color_p))
    if cfg.grayscale_p > 0:
        steps.append(v2.RandomGrayscale(p=cfg.grayscale_p))
    if cfg.blur_p > 0:
        blur = v2.GaussianBlur(kernel_size=_blur_kernel(cfg.size), sigma=(0.1, 2.0))
        steps.append(v2.RandomApply([blur], p=cfg.blur_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    if cfg.rotate90:
        steps.append(RandomRot90())  # after Normalize: per-channel ops commute with rotation
    compose: Transform = v2.Compose(steps)
    return compose


def eval_transform(size: int = 224) -> Transform:
    """Deterministic: resize to ``(S, S)`` and normalise; uint8 ``(H, W, 3)`` -> ``(3, S, S)``."""
    compose: Transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return compose
