"""ResNet backbones with per-layer metadata, and the weights they start from.

A backbone is a torchvision ``ResNet`` whose ``fc`` is replaced by ``nn.Identity``, so its
``state_dict`` is exactly the published backbone minus the classifier head. Layer taps follow
timm's feature-info idea: each tap has a channel count and a stride.
"""

from __future__ import annotations

import logging
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from skintl.registry import Registry

log = logging.getLogger(__name__)

#: Blocks whose pooled output can be tapped, in forward order.
LAYERS: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")

ENCODER_FILE_FORMAT = "skintl-encoder"
ENCODER_FILE_VERSION = 1


@dataclass(frozen=True)
class LayerInfo:
    """Channels and stride (input pixels per output pixel) of one tapped block."""

    channels: int
    stride: int


@dataclass(frozen=True)
class BackboneSpec:
    """How to build an architecture and what its taps look like."""

    factory: Any
    layers: dict[str, LayerInfo]
    imagenet_weights: Any


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _resnet_layers(widths: tuple[int, int, int, int]) -> dict[str, LayerInfo]:
    strides = (4, 8, 16, 32)
    info = {"stem": LayerInfo(64, 4)}
    info.update(
        {
            f"layer{i + 1}": LayerInfo(w, s)
            for i, (w, s) in enumerate(zip(widths, strides, strict=True))
        }
    )
    return info


BACKBONES.register("resnet18")(
    BackboneSpec(
        models.resnet18, _resnet_layers((64, 128, 256, 512)), models.ResNet18_Weights.IMAGENET1K_V1
    )
)
BACKBONES.register("resnet50")(
    BackboneSpec(
        models.resnet50,
        _resnet_layers((256, 512, 1024, 2048)),
        models.ResNet50_Weights.IMAGENET1K_V1,
    )
)


def layer_info(arch: str) -> dict[str, LayerInfo]:
    """Per-layer channels and stride of ``arch`` (e.g. ``layer_info("resnet50")["layer2"]``)."""
    return BACKBONES.get(arch).layers


def build_backbone(arch: str) -> models.ResNet:
    """A randomly initialised backbone of ``arch`` without its classifier head."""
    net: models.ResNet = BACKBONES.get(arch).factory(weights=None)
    net.fc = nn.Identity()
    return net


class WeightsError(RuntimeError):
    """A weights file or name that cannot be used, with a message that says how to fix it."""


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``arch`` (downloads when online), without ``fc``.

    Offline, raises :class:`WeightsError` naming the file to place in torch's hub cache.
    """
    weights = BACKBONES.get(arch).imagenet_weights
    filename = weights.url.rsplit("/", 1)[-1]
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        sd = weights.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise WeightsError(
            f"could not load torchvision's ImageNet weights for {arch} ({e}). This machine looks "
            f"offline: download {weights.url} elsewhere and place it at {target} "
            "(or set TORCH_HOME), or import a local file with `skintl weights import`."
        ) from None
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


def save_encoder_file(
    path: Path, arch: str, state_dict: dict[str, torch.Tensor], provenance: dict[str, Any]
) -> None:
    """Write skintl's encoder file: backbone state dict (no ``fc``) plus provenance.

    The file holds only tensors, strings and numbers, so it loads with ``weights_only=True``.
    """
    from skintl.io import atomic_path

    check_backbone_keys(arch, state_dict, source=str(path))
    payload = {
        "format": ENCODER_FILE_FORMAT,
        "version": ENCODER_FILE_VERSION,
        "arch": arch,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "provenance": dict(provenance),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def check_backbone_keys(arch: str, state_dict: dict[str, Any], source: str) -> None:
    """Assert ``state_dict`` has exactly the backbone keys of ``arch``; else a clear error."""
    with torch.device("meta"):  # key names only: no memory, no initialisation cost
        expected = set(build_backbone(arch).state_dict())
    got = set(state_dict)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise WeightsError(
            f"{source}: not a {arch} backbone state dict: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Convert published checkpoints with `skintl weights import --format ...`."
        )


def read_encoder_file(path: Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_encoder_file`: ``(arch, state_dict, provenance)``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"encoder weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad pickles
        raise WeightsError(
            f"{path}: cannot be read as a weights-only torch file ({type(e).__name__}). "
            "Import published checkpoints first with `skintl weights import`."
        ) from None
    if not (isinstance(obj, dict) and obj.get("format") == ENCODER_FILE_FORMAT):
        raise WeightsError(
            f"{path}: not a skintl encoder file (no 'format: {ENCODER_FILE_FORMAT}' entry). "
            "Convert it with `skintl weights import --format torchvision|moco|simclr FILE`."
        )
    arch = str(obj["arch"])
    return arch, obj["state_dict"], dict(obj.get("provenance", {}))


def load_backbone(arch: str, weights: str) -> tuple[models.ResNet, dict[str, Any]]:
    """Build ``arch`` and load ``weights``: ``"random"``, ``"imagenet"`` or an encoder file.

    Returns the backbone in eval mode and a provenance dict.
    """
    net = build_backbone(arch)
    if weights == "random":
        prov: dict[str, Any] = {"method": "random"}
    elif weights == "imagenet":
        net.load_state_dict(imagenet_state_dict(arch), strict=True)
        prov = {"method": "supervised-imagenet", "source": BACKBONES.get(arch).imagenet_weights.url}
    else:
        file_arch, sd, prov = read_encoder_file(Path(weights))
        if file_arch != arch:
            raise WeightsError(
                f"{weights}: holds a {file_arch} encoder, but the config says {arch}"
            )
        check_backbone_keys(arch, sd, source=weights)
        net.load_state_dict(sd, strict=True)
    return net.eval(), prov
