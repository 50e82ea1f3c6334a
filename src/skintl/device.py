"""Where torch runs: the one place a device (``auto``, ``cpu``, ``cuda[:N]``) is chosen."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from skintl.config import ConfigError


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
