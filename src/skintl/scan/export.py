"""``skintl bundle``: a scan bundle from a finished study's run directory (read through files)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from skintl.rundir import sha256_file
from skintl.scan.bundle import BundleError, fit_head, save_bundle

log = logging.getLogger(__name__)


def photo_short_side(path: Path) -> int:
    """Short side (px) of a photo as displayed (EXIF orientation does not change it)."""
    from PIL import Image

    with Image.open(path) as im:
        return int(min(im.size))


def _features_record(cfg: Any, run_dir: Path, encoder: str, layer: str) -> dict[str, Any]:
    """The record of the features the bundle's classifier is fitted on, checked against the
    run's config up the chain (manifest, patches, the encoder's arch and weights)."""
    from skintl.data.stage import check_patches
    from skintl.features.stage import checked_record, feature_inputs

    meta = run_dir / "features" / encoder / f"{layer}.json"
    if not meta.is_file():
        have = sorted(p.name for p in (run_dir / "features").glob("*") if p.is_dir())
        raise BundleError(
            f"{meta}: no features of encoder {encoder!r} layer {layer!r} in this run "
            f"(encoders with features: {have}); pick another or run `skintl features` first"
        )
    inputs = feature_inputs(cfg, run_dir, encoder, check_patches(cfg, run_dir))
    return checked_record(run_dir, encoder, layer, inputs)


def training_photos(manifest: pd.DataFrame) -> list[dict[str, Any]]:
    """Name, sha256 and patient of every photo a bundle was trained on (for the leak warning)."""
    return [
        {"name": Path(p).name, "sha256": sha256_file(Path(p)), "patient_id": str(pid)}
        for p, pid in zip(manifest["image_path"], manifest["patient_id"], strict=True)
    ]


def bundle_meta(
    cfg: Any, run_dir: Path, encoder: str, layer: str, classifier: str, patients: list[str]
) -> dict[str, Any]:
    """The JSON record of a bundle trained on ``patients`` of the run, once its features are
    checked against the run's config (which refuses stale patches, features or weights)."""
    from skintl.encoders.backbones import layer_info

    enc = next((e for e in cfg.features.encoders if e.name == encoder), None)
    if enc is None:
        names = [e.name for e in cfg.features.encoders]
        raise BundleError(f"{run_dir}: no encoder {encoder!r} in this study; valid: {names}")
    rec = _features_record(cfg, run_dir, encoder, layer)
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    manifest = manifest[manifest["patient_id"].astype(str).isin(patients)]
    sides = [photo_short_side(Path(p)) for p in manifest["image_path"]]
    info = layer_info(enc.arch)[layer]
    return {
        "arch": enc.arch, "layer": layer, "layer_stride": info.stride,
        "layer_channels": info.channels, "feature_mode": rec.get("mode", "patch"),
        "patch_size": cfg.patches.size, "input_size": cfg.features.input_size,
        "photo_short_side": float(np.median(sides)) if sides else None,
        "classifier": classifier, "encoder": enc.model_dump(), "provenance": rec["provenance"],
        "features_fingerprint": rec["fingerprint"], "weights": rec["inputs"]["weights"],
        "study": cfg.name,
        "training_patients": sorted(patients), "training_photos": training_photos(manifest),
    }  # fmt: skip


def make_bundle(
    run_dir: Path,
    encoder: str,
    layer: str,
    classifier: str,
    out: Path,
    exclude_patients: list[str] | tuple[str, ...] = (),
    only_patients: list[str] | None = None,
) -> dict[str, Any]:
    """Refit ``classifier`` on the run's cached features of every patient (but the excluded
    ones, or only ``only_patients``) and write the bundle to ``out``. Returns its record.

    The run's ``config.yaml`` is the config its files must match: the features are refused
    when their fingerprint (patches, arch, the weights' seed or file hash, ...) differs from the
    one that config gives, so the encoder written here is the one the classifier was fitted on.
    """
    from skintl.config import load_config
    from skintl.encoders.backbones import load_backbone
    from skintl.features.dense import truncated_backbone
    from skintl.features.stage import load_features, weights_id
    from skintl.pretrain.stage import current_weights

    cfg = load_config(run_dir / "config.yaml")
    index = pd.read_parquet(run_dir / "patches" / "index.parquet")
    pids = index["patient_id"].astype(str)
    keep = ~pids.isin(set(map(str, exclude_patients))).to_numpy()
    if only_patients is not None:
        keep &= pids.isin(set(only_patients)).to_numpy()
    meta = bundle_meta(cfg, run_dir, encoder, layer, classifier, sorted(set(pids[keep])))
    unknown = sorted(set(map(str, exclude_patients)) - set(pids))
    if unknown:
        raise BundleError(f"--exclude-patients {unknown} are not patients of {run_dir}")
    X = np.asarray(load_features(run_dir, encoder, layer))[keep]
    y, groups = index["class"].to_numpy()[keep], pids.to_numpy()[keep]
    missing = sorted(set(cfg.classes) - set(y))
    if missing:
        raise BundleError(f"no training patches of class {missing} left after the exclusions")
    head, warned = fit_head(cfg, X, y, groups, classifier)
    meta["warnings"] = warned
    for text in dict.fromkeys(warned):
        log.warning("bundle %s: the %s refit warned: %s", out, classifier, text)
    enc = next(e for e in cfg.features.encoders if e.name == encoder)
    weights = current_weights(enc, cfg, run_dir)
    if weights_id(weights, cfg.seed, enc.arch) != meta["weights"]:  # changed since the check above
        raise BundleError(f"{weights}: changed while the bundle was made; run it again")
    torch.manual_seed(cfg.seed)  # as the features stage: the same random-init encoder
    net, _ = load_backbone(enc.arch, weights)
    save_bundle(out, meta, truncated_backbone(net, layer), head)
    log.info(
        "bundle %s: %s/%s/%s on %d patients", out, encoder, layer, classifier, len(set(groups))
    )
    return meta
