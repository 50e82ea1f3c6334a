"""Scan bundles: everything ``skintl scan`` needs from a finished study, in one file.

A bundle holds the encoder truncated after its layer (tensors; a cell head's deepest tap), the
classifier refitted on the study's patients (arrays, see :mod:`skintl.scan.head`) and a JSON
record: arch, layer, feature mode (patch, dense, or cells for a cell head:
:mod:`skintl.scan.cells`, with its taps), patch size, the photo scale the patches were cut at
(median short side of the training photos), class names, training patients and photos (for the
leak warning) and the skintl version. It is written with ``torch.save`` of tensors and strings
only and read with ``torch.load(weights_only=True)``, so loading never unpickles code.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skintl import __version__
from skintl.scan.head import SCAN_CLASSIFIERS, Head, HeadError, head_from_estimator

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "skintl-scan-bundle"
BUNDLE_VERSION = 1


class BundleError(ValueError):
    """A bundle that cannot be made or used; the message names the file and the fix."""


@dataclass
class Bundle:
    """A loaded bundle: its record, the encoder trunk (eval mode), the classifier head and the
    file it was read from (None when built in memory)."""

    meta: dict[str, Any]
    #: the encoder up to ``layer`` (:func:`~skintl.encoders.taps.truncated_backbone`); for a
    #: cell head, :class:`~skintl.encoders.taps.TapMaps` of its taps
    trunk: nn.Module
    head: Head
    path: Path | None = None

    @property
    def layer(self) -> str:
        return str(self.meta["layer"])

    @property
    def size(self) -> int:
        return int(self.meta["patch_size"])

    @property
    def stride(self) -> int:
        return int(self.meta["layer_stride"])

    @property
    def cell_strides(self) -> dict[str, int]:
        """A cell head's taps and their strides, in the order of its features' channels."""
        layers = self.meta.get("cell_layers") or [self.layer]
        strides = self.meta.get("cell_strides") or [self.stride]
        return {str(t): int(s) for t, s in zip(layers, strides, strict=True)}

    @property
    def cell_stride(self) -> int:
        """px per cell of a cell head's grid (its finest tap's stride)."""
        return min(self.cell_strides.values())

    @property
    def mode(self) -> str:
        return str(self.meta["feature_mode"])

    @property
    def thresholds(self) -> dict[str, float]:
        """A cell head's decision threshold per lesion class, chosen on its training patients
        (empty: argmax)."""
        return {str(k): float(v) for k, v in (self.meta.get("cell_thresholds") or {}).items()}

    def scan_mode(self, mode: str | None) -> str:
        """The scan mode to use: ``mode`` when this bundle's classifier was trained on the
        features it computes, the bundle's own mode (dense, or exact for patch features) when
        None. A mismatch is a :class:`BundleError` naming the bundle's feature mode: a dense
        bundle scanned in exact mode gave empty maps, a patch bundle in dense mode wrong ones."""
        from skintl.scan.windows import DEFAULT_MODE, FEATURE_MODE, MODES

        if mode is None:
            return DEFAULT_MODE[self.mode]
        if mode not in MODES:
            raise BundleError(f"unknown scan mode {mode!r}; valid: {', '.join(MODES)}")
        if FEATURE_MODE[mode] != self.mode:
            fits = [m for m in MODES if FEATURE_MODE[m] == self.mode]
            raise BundleError(
                f"{self.path or 'bundle'}: its classifier was trained on {self.mode} features "
                f"(feature mode {self.mode!r}), but {mode} mode needs {FEATURE_MODE[mode]} "
                f"features; scan it in {' or '.join(fits)} mode (the default), or export a "
                f"bundle from an encoder with features mode {FEATURE_MODE[mode]!r}"
            )
        return mode


def save_bundle(path: Path, meta: dict[str, Any], trunk: nn.Module, head: Head) -> None:
    """Write a bundle atomically (tensors and a JSON string only)."""
    from skintl.io import atomic_path

    tensors = {f"encoder.{k}": v.detach().cpu() for k, v in trunk.state_dict().items()}
    tensors |= {f"head.{k}": torch.from_numpy(np.asarray(v)) for k, v in head.tensors().items()}
    record = {**meta, "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
              "skintl_version": __version__, "classes": head.classes}  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save({"meta": json.dumps(record, sort_keys=True), "tensors": tensors}, tmp)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise BundleError(f"{path}: bundle file not found (make one with `skintl bundle RUN_DIR`)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, ... for pickles and non-torch files
        raise BundleError(
            f"{path}: not a weights-only file ({type(e).__name__}): skintl never unpickles a "
            "bundle, which could run code. Re-export it with `skintl bundle RUN_DIR ...`."
        ) from None
    ok = isinstance(obj, dict) and isinstance(obj.get("meta"), str)
    if not ok or not isinstance(obj.get("tensors"), dict):
        raise BundleError(f"{path}: not a skintl scan bundle (no meta/tensors entries)")
    try:
        meta = json.loads(obj["meta"])
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: the bundle's record is not valid JSON ({e})") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a skintl scan bundle (format {meta.get('format')!r})")
    if meta.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"{path}: bundle format version {meta.get('version')} (made by skintl "
            f"{meta.get('skintl_version')}); this skintl {__version__} reads version "
            f"{BUNDLE_VERSION} only. Re-export it with this skintl's `skintl bundle`."
        )
    return meta, obj["tensors"]


def _trunk(path: Path, meta: dict[str, Any], sd: dict[str, torch.Tensor]) -> nn.Module:
    from skintl.encoders.backbones import build_backbone, check_arch, layer_info
    from skintl.encoders.taps import TapMaps, truncated_backbone

    arch, layer = meta.get("arch"), meta.get("layer")
    try:
        check_arch(str(arch))
    except ValueError as e:
        raise BundleError(f"{path}: {e}") from None
    info = layer_info(str(arch))
    if layer not in info or info[layer].stride != meta.get("layer_stride"):
        raise BundleError(f"{path}: layer {layer!r} of {arch} cannot be honoured "
                          f"(valid: {list(info)}, stride {meta.get('layer_stride')})")  # fmt: skip
    with torch.device("meta"):
        expected = set(truncated_backbone(build_backbone(str(arch)), str(layer)).state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise BundleError(
            f"{path}: its encoder tensors are not {arch} up to {layer}: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}). "
            "The record and the weights disagree: re-export the bundle."
        )
    if meta.get("feature_mode") == "cells":  # every tap of the cell head from one pass
        taps = _cell_taps(path, meta, info)
        tapped = TapMaps(build_backbone(str(arch)), taps)
        tapped.body.load_state_dict(sd, strict=True)  # the body's keys are the backbone's own
        return tapped.eval()
    trunk = truncated_backbone(build_backbone(str(arch)), str(layer))
    trunk.load_state_dict(sd, strict=True)
    return trunk.eval()


def _cell_taps(path: Path, meta: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """A cell bundle's taps, checked against its arch: known, in forward order, with the
    recorded strides, the deepest one its ``layer``."""
    taps = [str(t) for t in meta.get("cell_layers") or [meta["layer"]]]
    strides = meta.get("cell_strides") or [meta.get("layer_stride")]
    ordered = [t for t in info if t in taps]
    if (ordered != taps or taps[-1] != meta["layer"] or len(strides) != len(taps)
            or any(info[t].stride != s for t, s in zip(taps, strides, strict=True))):  # fmt: skip
        raise BundleError(f"{path}: cell taps {taps} (strides {strides}) do not match the "
                          f"taps of {meta.get('arch')} up to {meta.get('layer')}; re-export "
                          "the bundle")  # fmt: skip
    return taps


def load_bundle(path: Path | str) -> Bundle:
    """Read and check a bundle; every refusal is a :class:`BundleError` naming the file."""
    path = Path(path)
    meta, tensors = _read(path)
    enc = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
    head_t = {
        k.removeprefix("head."): v.numpy() for k, v in tensors.items() if k.startswith("head.")
    }
    if meta.get("classifier") not in SCAN_CLASSIFIERS:
        raise BundleError(f"{path}: classifier {meta.get('classifier')!r} is not supported for "
                          f"scanning (supported: {', '.join(SCAN_CLASSIFIERS)})")  # fmt: skip
    if meta.get("feature_mode") not in ("patch", "dense", "cells"):
        raise BundleError(f"{path}: feature mode {meta.get('feature_mode')!r} is unknown")
    trunk = _trunk(path, meta, enc)
    try:
        head = Head.from_tensors(head_t, [str(c) for c in meta.get("classes", [])])
    except HeadError as e:
        raise BundleError(f"{path}: {e}") from None
    if head.n_features != meta.get("layer_channels"):
        raise BundleError(f"{path}: classifier takes {head.n_features} features but "
                          f"{meta.get('layer')} has {meta.get('layer_channels')}")  # fmt: skip
    return Bundle(meta, trunk, head, path)


def fit_head(
    cfg: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray, name: str
) -> tuple[Head, list[str]]:
    """Fit ``CLASSIFIERS[name]`` (the study's settings and seed) and return it as arrays, with
    the fit's warnings (``"Category: message"``, e.g. an unconverged solver or an MLP stopped
    by its epoch cap), which the bundle records."""
    from threadpoolctl import threadpool_limits

    from skintl.evaluation.classifiers import CLASSIFIERS, fit_grouped

    if name not in SCAN_CLASSIFIERS:
        raise BundleError(f"classifier {name!r} cannot be bundled for scanning; use one of "
                          f"{', '.join(SCAN_CLASSIFIERS)}")  # fmt: skip
    est = CLASSIFIERS.get(name)(cfg.evaluation, cfg.seed)
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=2):
        warnings.simplefilter("always")
        model = fit_grouped(est, X, y, groups)
    warned = [f"{w.category.__name__}: {w.message}" for w in caught]
    return head_from_estimator(model, name), warned
