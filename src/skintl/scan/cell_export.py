"""Cell-head bundles from a finished study: the cell table of its photos, and the fitted head.

The table (every domain cell of every manifest photo: :mod:`skintl.scan.cells`) is computed
once per (encoder, taps) and cached as ``scan/cells/<encoder>/<tap>[+<tap>...].npz``, with a
JSON record of what it was computed from written last; each fold's bundle selects its patients'
rows. Several taps of the encoder are stacked on the finest tap's grid
(:func:`skintl.features.dense.cell_features`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skintl.io import atomic_path, write_json
from skintl.rundir import fingerprint, fingerprint_matches, invalidate
from skintl.scan.bundle import BundleError, fit_head, save_bundle
from skintl.scan.cells import (
    CELL_CLASSIFIERS,
    CELL_RULE,
    THRESHOLD_RULE,
    CellTable,
    choose_thresholds,
    training_rows,
)
from skintl.scan.head import Head

log = logging.getLogger(__name__)

#: how a cell head's decision threshold is chosen ("none": argmax)
THRESHOLD_OBJECTIVES = ("none", "dice", "burden")


def _encoder(cfg: Any, encoder: str) -> Any:
    enc = next((e for e in cfg.features.encoders if e.name == encoder), None)
    if enc is None:
        names = [e.name for e in cfg.features.encoders]
        raise BundleError(f"no encoder {encoder!r} in this study; valid: {names}")
    return enc


def ordered_taps(arch: str, layers: list[str] | str) -> list[str]:
    """A cell head's taps in the arch's forward order (the order of their stacked channels);
    an unknown tap is a :class:`BundleError` naming the valid ones."""
    from skintl.encoders.backbones import layer_info

    wanted = [layers] if isinstance(layers, str) else list(layers)
    info = layer_info(arch)
    unknown = [t for t in wanted if t not in info]
    if unknown or not wanted:
        raise BundleError(f"{arch} has no taps {unknown or wanted}; valid: {', '.join(info)}")
    return [t for t in info if t in wanted]


def table_fingerprint(cfg: Any, run_dir: Path, encoder: str, layers: list[str] | str) -> str:
    """The fingerprint of what the cell table of ``encoder`` / ``layers`` is computed from."""
    from skintl.data.orientation import ORIENTATION_RULE
    from skintl.features.dense import DENSE_RULE
    from skintl.features.stage import weights_id
    from skintl.pretrain.stage import current_weights

    enc = _encoder(cfg, encoder)
    manifest = json.loads((run_dir / "manifest.json").read_text())["fingerprint"]
    return fingerprint({
        "manifest": manifest, "arch": enc.arch, "layer": "+".join(ordered_taps(enc.arch, layers)),
        "size": cfg.patches.size,
        "weights": weights_id(current_weights(enc, cfg, run_dir), cfg.seed, enc.arch),
        "classes": cfg.classes, "rules": [CELL_RULE, ORIENTATION_RULE, DENSE_RULE],
    })  # fmt: skip


def _compute_table(cfg: Any, run_dir: Path, encoder: str, layers: list[str]) -> CellTable:
    import torch

    from skintl.data.sources import effective_data_config, lesion_label_map, read_mask, read_rgb
    from skintl.encoders.backbones import layer_info, load_backbone
    from skintl.encoders.taps import TapMaps
    from skintl.features.dense import cell_features, inference_trunk, tap_geometries
    from skintl.features.extract import exact_fp32, resolve_device
    from skintl.pretrain.stage import current_weights
    from skintl.progress import progress
    from skintl.scan.cells import cell_grid, photo_cells, target_class
    from skintl.scan.skin import skin_mask

    enc = _encoder(cfg, encoder)
    data = effective_data_config(cfg, run_dir)
    if data.source == "patch_folders":
        raise BundleError("a cell head needs whole photos with masks; patch folders have none")
    torch.manual_seed(cfg.seed)  # as the features stage: the same random-init encoder
    net, _ = load_backbone(enc.arch, current_weights(enc, cfg, run_dir))
    info, size = layer_info(enc.arch), cfg.patches.size
    taps = TapMaps(net, layers)
    geos = tap_geometries(taps, {t: info[t].stride for t in layers}, size)
    stride = min(g.stride for g in geos.values())  # the grid of the finest tap
    dev = resolve_device(cfg.features.device)
    trunk = inference_trunk(taps, dev)
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    parts: list[tuple[np.ndarray, ...]] = []
    targets = []
    with exact_fp32(dev):
        for i, (_, row) in enumerate(progress(list(manifest.iterrows()), "cells", "photo")):
            photo = read_rgb(Path(row["image_path"]), data.max_image_pixels)
            mask = read_mask(Path(row["annotation"]), data.max_image_pixels)
            lab = lesion_label_map(mask, data, row["labels"], cfg.classes)
            grid = cell_grid(lab, skin_mask(photo, size), stride, cfg.classes)
            fmap = cell_features(trunk, photo, geos, cfg.features.dense_tile, dev).numpy()
            X, label, doctor = photo_cells(fmap, grid)
            parts.append((X, label, doctor, np.full(len(label), i)))
            targets.append(target_class(grid.doctor, cfg.classes) or "")
    X, label, doctor, photo_idx = (np.concatenate(a) for a in zip(*parts, strict=True))
    patients = np.asarray(manifest["patient_id"].astype(str), dtype=str)  # no pickled objects
    return CellTable(X, label, doctor, photo_idx, patients, np.asarray(targets, dtype=str))


def cell_table(cfg: Any, run_dir: Path, encoder: str, layers: list[str] | str) -> CellTable:
    """The study's cell table of ``encoder`` / ``layers`` (one tap or several, stacked on the
    finest tap's grid), computed once and cached."""
    layers = ordered_taps(_encoder(cfg, encoder).arch, layers)
    key = "+".join(layers)
    folder = run_dir / "scan" / "cells" / encoder
    meta, arrays = folder / f"{key}.json", folder / f"{key}.npz"
    fp = table_fingerprint(cfg, run_dir, encoder, layers)
    if fingerprint_matches(meta, fp) and arrays.is_file():
        with np.load(arrays) as z:
            return CellTable(**{k: z[k] for k in z.files})
    invalidate(meta)
    table = _compute_table(cfg, run_dir, encoder, layers)
    folder.mkdir(parents=True, exist_ok=True)
    columns: dict[str, Any] = table.arrays()
    with atomic_path(arrays) as tmp, open(tmp, "wb") as f:
        np.savez(f, **columns)
    write_json({"fingerprint": fp, "cells": len(table.label),
                "labelled": int((table.label >= 0).sum())}, meta)  # fmt: skip
    log.info("cell table %s/%s: %d cells of %d photos", encoder, key, len(table.label),
             len(table.patients))  # fmt: skip
    return table


def cell_fitter(cfg: Any, classifier: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], Head]:
    """``(X, y, groups) -> Head``: the study's ``classifier`` with the natural class prior."""
    if classifier not in CELL_CLASSIFIERS:
        raise BundleError(f"classifier {classifier!r} cannot be a cell head (its classes are "
                          f"reweighted); use one of {', '.join(CELL_CLASSIFIERS)}")  # fmt: skip
    ev = cfg.evaluation
    natural = cfg.model_copy(update={"evaluation": ev.model_copy(
        update={"logreg": ev.logreg.model_copy(update={"class_weight": None})})})  # fmt: skip

    def fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Head:
        head, warned = fit_head(natural, X, y, groups, classifier)
        for text in dict.fromkeys(warned):
            log.warning("cell head: the %s fit warned: %s", classifier, text)
        return head

    return fit


def make_cell_bundle(
    run_dir: Path,
    encoder: str,
    layers: list[str] | str,
    classifier: str,
    out: Path,
    only_patients: list[str] | None = None,
    threshold: str = "none",
    inner_folds: int = 3,
    max_per_photo: int | None = None,
    exclude_patients: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Fit a cell head on the cells of ``layers`` (one tap, or several stacked on the finest
    tap's grid) of every patient of the run (or ``only_patients``, less ``exclude_patients``),
    choose its thresholds on those patients only (``threshold``: none, dice, burden) and write
    the bundle to ``out``. Returns its record."""
    import torch

    from skintl.config import load_config
    from skintl.encoders.backbones import layer_info, load_backbone
    from skintl.features.dense import truncated_backbone
    from skintl.pretrain.stage import current_weights
    from skintl.scan.export import bundle_meta

    if threshold not in THRESHOLD_OBJECTIVES:
        raise BundleError(f"threshold {threshold!r}; valid: {', '.join(THRESHOLD_OBJECTIVES)}")
    cfg = load_config(run_dir / "config.yaml")
    layers = ordered_taps(_encoder(cfg, encoder).arch, layers)
    table = cell_table(cfg, run_dir, encoder, layers)
    unknown = sorted(set(map(str, exclude_patients)) - set(table.patients))
    if unknown:
        raise BundleError(f"--exclude-patients {unknown} are not patients of {run_dir}")
    chosen = set(table.patients) if only_patients is None else set(only_patients)
    patients = sorted(str(p) for p in chosen - set(map(str, exclude_patients)))
    fit = cell_fitter(cfg, classifier)
    rows = training_rows(table, patients, max_per_photo, cfg.seed)
    missing = sorted(set(range(len(cfg.classes))) - set(table.label[rows].tolist()))
    if missing:
        raise BundleError(f"no training cells of class {[cfg.classes[i] for i in missing]}")
    y = np.asarray(cfg.classes)[table.label[rows]]
    head = fit(table.X[rows], y, table.patients[table.photo[rows]])
    thresholds = {}
    if threshold != "none":
        thresholds = choose_thresholds(table, patients, cfg.classes, fit, threshold,
                                       inner_folds, max_per_photo, cfg.seed)  # fmt: skip
    meta = bundle_meta(cfg, run_dir, encoder, layers[-1], classifier, patients)
    info = layer_info(meta["arch"])
    meta |= {"feature_mode": "cells", "head": "cells", "cell_rule": CELL_RULE,
             "cell_layers": layers, "cell_strides": [info[t].stride for t in layers],
             "layer_channels": sum(info[t].channels for t in layers),
             "threshold_rule": THRESHOLD_RULE,
             "training_cells": len(rows), "cell_thresholds": thresholds,
             "threshold_objective": threshold, "threshold_inner_folds": inner_folds,
             "max_cells_per_photo": max_per_photo}  # fmt: skip
    enc = _encoder(cfg, encoder)
    torch.manual_seed(cfg.seed)  # as the features stage: the same random-init encoder
    net, _ = load_backbone(enc.arch, current_weights(enc, cfg, run_dir))
    save_bundle(out, meta, truncated_backbone(net, layers[-1]), head)  # up to the deepest tap
    log.info("cell bundle %s: %s/%s/%s on %d cells of %d patients, thresholds %s", out,
             encoder, "+".join(layers), classifier, len(rows), len(patients),
             thresholds)  # fmt: skip
    return meta
