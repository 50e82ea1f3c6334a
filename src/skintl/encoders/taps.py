"""Where a backbone can be tapped, and the backbone cut after a tap, for any supported arch.

A backbone is a sequence of *steps* (module paths such as ``conv1``, ``layer2`` or
``blocks.5``) whose outputs, run in order, are its forward pass up to its last stage; some steps
end at a *tap* (``stem``, ``layer2``, ``blocks.5``). This module is the one place that turns a
network into that sequence, so features, dense pooling, bundles, scanning and fine-tuning never
ask which architecture they hold.

Every trunk and tap set starts with :class:`Normalize`, the arch's input normalisation (ImageNet
mean / std for torchvision ResNets, the arch's own for timm models, e.g. 0.5 / 0.5 for the
TensorFlow EfficientNet-Lite weights), so callers feed images scaled to [0, 1].
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision ResNet: (module path, tap ending there or None), in forward order
_RESNET_STEPS: tuple[tuple[str, str | None], ...] = (
    ("conv1", None), ("bn1", None), ("relu", None), ("maxpool", "stem"),
    ("layer1", "layer1"), ("layer2", "layer2"), ("layer3", "layer3"), ("layer4", "layer4"),
)  # fmt: skip


class Normalize(nn.Module):
    """(B, 3, H, W) in [0, 1] -> normalised by the arch's mean and std (buffers not saved, so
    a trunk's state dict holds exactly the backbone's tensors)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _is_timm(net: nn.Module) -> bool:
    return hasattr(net, "feature_info") and hasattr(net, "pretrained_cfg")


def input_norm(net: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a backbone's weights expect on [0, 1] RGB input."""
    if _is_timm(net):
        cfg = net.pretrained_cfg
        return tuple(cfg["mean"]), tuple(cfg["std"])  # type: ignore[index]
    return IMAGENET_MEAN, IMAGENET_STD


def backbone_steps(net: nn.Module) -> list[tuple[str, str | None]]:
    """``(module path, tap or None)`` of every step up to the deepest tap, in forward order.

    timm models: the top-level children before their classifier, the container of the stages
    that ``feature_info`` names (``blocks`` of an EfficientNet, ``stages`` of a ConvNeXt) opened
    into one step per stage, each a tap named by its path, listed or not in ``feature_info``
    (EfficientNet's ``blocks.3`` and ``blocks.5`` are not); a listed top-level module (e.g. the
    ``act1`` of a timm ResNet) is a tap too.
    """
    if not _is_timm(net):
        if not all(hasattr(net, p) for p, _ in _RESNET_STEPS):
            raise TypeError(f"{type(net).__name__} is neither a torchvision ResNet nor timm model")
        return list(_RESNET_STEPS)
    listed = [str(d["module"]) for d in net.feature_info]  # type: ignore[union-attr]
    containers = {m.split(".")[0] for m in listed if "." in m}
    steps: list[tuple[str, str | None]] = []
    for name, child in net.named_children():
        if name in containers:
            steps += [(f"{name}.{i}", f"{name}.{i}") for i, _ in child.named_children()]
        else:
            steps.append((name, name if name in listed else None))
    last = max(i for i, (_, tap) in enumerate(steps) if tap is not None)
    return steps[: last + 1]


def tap_names(net: nn.Module) -> list[str]:
    """Every tap of ``net`` in forward order."""
    return [tap for _, tap in backbone_steps(net) if tap is not None]


def _nest(net: nn.Module, paths: Sequence[str]) -> nn.Sequential:
    """Normalisation, then ``paths`` of ``net`` in order, as a module whose state-dict keys are
    ``net``'s own (``blocks.0.0.conv_dw.weight``): a dotted path goes into a container named as
    its parent."""
    top: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(*input_norm(net)))
    for path in paths:
        parent, _, child = path.partition(".")
        if child:
            box = top.setdefault(parent, nn.Sequential())
            assert isinstance(box, nn.Sequential) and "." not in child, path
            box.add_module(child, net.get_submodule(path))
        else:
            top[parent] = net.get_submodule(path)
    return nn.Sequential(top)


def truncated_backbone(net: nn.Module, layer: str) -> nn.Sequential:
    """Input normalisation + ``net`` up to and including the tap ``layer``, as one module whose
    state-dict keys are the backbone's own (``conv1.weight``, ``layer1.0.conv1.weight``, ...).

    Input: (B, 3, H, W) in [0, 1]; output: the tap's (B, C, H / s, W / s) map.
    """
    steps = backbone_steps(net)
    taps = [tap for _, tap in steps if tap is not None]
    if layer not in taps:
        raise KeyError(f"unknown layer {layer!r}; valid: {', '.join(taps)}")
    end = next(i for i, (_, tap) in enumerate(steps) if tap == layer)
    return _nest(net, [p for p, _ in steps[: end + 1]]).eval()


class LayerTaps(nn.Module):
    """Runs a backbone once, up to the deepest requested tap, and average-pools each requested
    tap: ``(B, 3, H, W)`` in [0, 1] -> ``{tap: (B, C_tap)}``.

    Args:
        net: a backbone :func:`backbone_steps` knows (its head is never run).
        layers: taps to pool.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        steps = backbone_steps(net)
        taps = [tap for _, tap in steps if tap is not None]
        unknown = [layer for layer in layers if layer not in taps]
        if unknown:
            raise KeyError(f"unknown layers {unknown}; valid: {', '.join(taps)}")
        self.layers = [t for t in taps if t in layers]  # forward order
        end = max(i for i, (_, tap) in enumerate(steps) if tap in self.layers)
        self.steps = steps[: end + 1]
        self.normalize = Normalize(*input_norm(net))
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.normalize(x)
        out = {}
        for path, tap in self.steps:
            x = self.net.get_submodule(path)(x)
            if tap in self.layers:
                out[tap] = x.mean(dim=(2, 3))
        return out
