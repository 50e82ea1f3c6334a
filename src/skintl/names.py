"""The names a config is checked against, without importing torch, timm or scikit-learn.

A config is validated before any heavy library loads, so a typo answers at once. The
registries (``evaluation.classifiers.CLASSIFIERS``, ``features.handcrafted.HANDCRAFTED``,
``encoders.backbones.BACKBONES``) hold the same names; a test keeps them equal.
timm's model names are read from its source files (``@register_model`` functions), not by
importing it (which imports torch).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

#: torchvision ResNets (``encoders.backbones.BACKBONES``) and their taps, in forward order
RESNET_ARCHS = ("resnet18", "resnet50")
RESNET_TAPS = ("stem", "layer1", "layer2", "layer3", "layer4")
#: ``evaluation.classifiers.CLASSIFIERS``
CLASSIFIERS = ("knn", "logreg", "mlp", "svm_linear", "svm_rbf", "thesis_mlp")
#: ``features.handcrafted.HANDCRAFTED``
HANDCRAFTED = ("colour_lbp", "lbp_yiq")

#: window placements of ``skintl scan --mode``; ``cells`` classifies every cell of the layer's
#: map with a cell head (:mod:`skintl.scan.cells`) instead of windows
SCAN_MODES = ("exact", "superpixel", "dense", "cells")
#: the feature mode a bundle's classifier must have been trained on to scan in each mode:
#: exact and superpixel windows are isolated patches, dense windows are pooled from the map,
#: cells are the map's own cells
FEATURE_MODE = {"exact": "patch", "superpixel": "patch", "dense": "dense", "cells": "cells"}
#: the mode a bundle scans in when none is asked for, by its feature mode
DEFAULT_MODE = {"patch": "exact", "dense": "dense", "cells": "cells"}
#: classifiers a bundle can hold (others have no array form, or no sensible scan-time cost)
SCAN_CLASSIFIERS: tuple[str, ...] = ("logreg", "mlp", "svm_linear")
#: classifiers of a cell head: both fit the natural class frequencies (logreg's class weights
#: are switched off; the linear SVM's are always balanced, so it is not offered)
CELL_CLASSIFIERS = ("logreg", "mlp")

#: Pillow's own decompression-bomb guard (about 89 megapixels); ``skintl scan --max-pixels``
DEFAULT_MAX_PIXELS = 89_478_485
#: ``skintl compare``'s keypoint detectors: SIFT registers 7 of PAD-UFES-20's 15 repeat pairs,
#: ORB 6 (both at 512 px)
DETECTORS = ("sift", "orb")
#: share of a region's area the other visit's lesions must cover for it to persist
MIN_OVERLAP = 0.1

_REGISTER = re.compile(r"^@register_model\s*\ndef\s+(\w+)\s*\(", re.MULTILINE)


def did_you_mean(name: str, valid: Iterable[str], n: int = 3) -> str:
    """``"; did you mean a, b?"`` for the ``n`` closest matches of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=n, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def check_names(kind: str, valid: Iterable[str], names: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the valid ones for the first of ``names`` not in ``valid``."""
    valid = sorted(valid)
    for name in names:
        if name not in valid:
            raise ValueError(
                f"unknown {kind} {name!r}{did_you_mean(name, valid)} (valid: {', '.join(valid)})"
            )


@cache
def timm_names() -> frozenset[str]:
    """Every model name timm registers, read from its ``models/*.py`` (about 0.1 s), or an
    empty set when timm is absent or its sources no longer match the pattern."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return frozenset()
    models = Path(spec.origin).parent / "models"
    found: set[str] = set()
    for f in models.glob("*.py"):
        found.update(_REGISTER.findall(f.read_text(encoding="utf-8", errors="replace")))
    return frozenset(found)


def _timm_knows(arch: str) -> bool:
    names = timm_names()
    if names:
        return arch.split(".", 1)[0] in names  # "name.pretrained_tag" is the model "name"
    import timm  # sources unreadable: ask timm itself (imports torch)

    return bool(timm.is_model(arch))


def check_arch(arch: str) -> None:
    """Raise ``ValueError`` (one line, close matches named) unless ``arch`` is a torchvision
    ResNet or a timm model name."""
    if arch in RESNET_ARCHS or _timm_knows(arch):
        return
    hint = did_you_mean(arch, [*RESNET_ARCHS, *timm_names()], n=5)
    raise ValueError(
        f"unknown arch {arch!r}: neither a torchvision ResNet ({', '.join(RESNET_ARCHS)}) "
        f"nor a timm model name{hint}"
    )


def static_taps(arch: str) -> list[str] | None:
    """The taps of ``arch`` when known without building it (the ResNets), else None (timm
    archs: :func:`skintl.encoders.backbones.layer_info` builds them on the meta device)."""
    return list(RESNET_TAPS) if arch in RESNET_ARCHS else None
