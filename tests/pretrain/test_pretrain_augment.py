"""Augmentations: shapes, normalisation, mild colour by default, 90-degree rotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skintl.pretrain.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    RandomRot90,
    eval_transform,
    view_transform,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def test_view_shape_dtype_and_randomness(images: np.ndarray, seeded: None) -> None:
    t = view_transform(AugmentConfig(size=24))
    a, b = t(images[0]), t(images[0])
    assert a.shape == (3, 24, 24) and a.dtype == torch.float32
    assert not torch.equal(a, b)  # two views of one image differ
    assert eval_transform(24)(images[0]).shape == (3, 24, 24)


def test_constant_mean_colour_normalises_to_zero(seeded: None) -> None:
    # geometry and blur leave a constant image constant; without colour jitter it maps to 0
    rgb = (np.array(IMAGENET_MEAN) * 255).round().astype(np.uint8)
    img = np.broadcast_to(rgb, (20, 30, 3)).copy()
    t = view_transform(AugmentConfig(size=16, color_strength=0.0, blur_p=1.0))
    for _ in range(5):
        assert t(img).abs().max().item() < 0.5 / 255 / min(IMAGENET_STD) + 1e-6


def _max_colour_shift(strength: float, n: int = 40) -> float:
    torch.manual_seed(0)
    rgb = np.array([180, 110, 100], dtype=np.uint8)  # skin-like pink
    img = np.broadcast_to(rgb, (16, 16, 3)).copy()
    t = view_transform(AugmentConfig(size=16, color_strength=strength, color_p=1.0, blur_p=0.0))
    ref = torch.tensor(rgb / 255.0, dtype=torch.float32)
    shifts = [(_unnormalise(t(img)).mean(dim=(1, 2)) - ref).abs().max().item() for _ in range(n)]
    return max(shifts)


def test_default_colour_jitter_is_mild() -> None:
    assert AugmentConfig().color_strength == 0.25 and AugmentConfig().grayscale_p == 0.0
    mild, simclr = _max_colour_shift(0.25), _max_colour_shift(1.0)
    assert mild < 0.25  # a pink stays pink: no channel moves by more than ~64 of 255
    assert simclr > 2 * mild


def test_random_rot90_gives_all_four_rotations() -> None:
    torch.manual_seed(0)
    x = torch.arange(12.0).view(1, 3, 4)[:, :, :3]  # (1, 3, 3), no symmetry
    seen = {tuple(RandomRot90()(x).flatten().tolist()) for _ in range(60)}
    expected = {tuple(torch.rot90(x, k, dims=(-2, -1)).flatten().tolist()) for k in range(4)}
    assert seen == expected


@pytest.mark.parametrize("size", [15, 32, 224])
def test_blur_kernel_is_odd(size: int) -> None:
    from skintl.pretrain.augment import _blur_kernel

    k = _blur_kernel(size)
    assert k % 2 == 1 and k >= 3 and abs(k - 0.1 * size) <= 2
