"""Tiny seeded data for the pre-training tests: 32 RGB images of 40x40, 3 classes, 8 lesions."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from skintl.pretrain.augment import AugmentConfig

N_IMAGES, SIDE, CROP = 32, 40, 32


@pytest.fixture(autouse=True)
def _one_thread_and_quiet() -> Iterator[None]:
    # On a small shared CPU, intra-op threads that spin while other processes hold the cores
    # made a ResNet-18 step 20x slower (5 s instead of 0.25 s); one thread is fastest here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def images() -> np.ndarray:
    """uint8 (32, 40, 40, 3): smooth colour gradients plus noise, distinct per image."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    base = rng.uniform(0.2, 0.8, size=(N_IMAGES, 1, 1, 3))
    slope = rng.uniform(-0.3, 0.3, size=(N_IMAGES, 1, 1, 2))
    img = base + slope[..., :1] * yy[None, ..., None] + slope[..., 1:] * xx[None, ..., None]
    img = img + rng.normal(0, 0.05, size=img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    return np.arange(N_IMAGES) % 3


@pytest.fixture
def groups() -> np.ndarray:
    """Lesion ids: 8 lesions of 4 patches each."""
    return np.repeat(np.arange(8), 4)


@pytest.fixture
def augment() -> AugmentConfig:
    return AugmentConfig(size=CROP)


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
