"""The ``features`` stage: cached pooled features per (encoder, layer).

``features/<encoder>/<layer>.npy`` holds (N, C) float32; the ``.json`` beside it, written last,
marks it complete and records what it was computed from. A cell is recomputed only when that
record no longer matches (other patches, weights or input size) or the array is unreadable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skintl.config import ConfigError, EncoderConfig, StudyConfig
from skintl.data.stage import check_patches, load_patches
from skintl.encoders.backbones import imagenet_id, layer_info, load_backbone, read_encoder_file
from skintl.features.dense import DENSE_RULE, dense_patch_features
from skintl.features.extract import extract_features
from skintl.features.handcrafted import HANDCRAFTED_LAYER, handcrafted_features
from skintl.io import write_json, write_npy
from skintl.pretrain.patients import check_encoder_patients
from skintl.pretrain.stage import current_weights
from skintl.rundir import (
    StaleError,
    check_record,
    fingerprint,
    fingerprint_matches,
    invalidate,
    patches_fingerprint,
    sha256_file,
)

log = logging.getLogger(__name__)


def weights_id(weights: str, seed: int, arch: str = "resnet50") -> str:
    """What fingerprints record of an encoder's weights: seed, ImageNet source or file hash."""
    if weights == "random":
        return f"random-seed{seed}"
    if weights == "imagenet":
        return imagenet_id(arch)
    return sha256_file(Path(weights))


def encoder_inputs(
    cfg: StudyConfig, enc: EncoderConfig, weights: str, patches_fp: str
) -> dict[str, Any]:
    """What an encoder's features depend on (their fingerprint's content): the patches, the
    arch, the weights (seed or file content), the input size and the feature mode."""
    mode = enc.mode or cfg.features.mode
    return {
        "patches": patches_fp,
        "arch": enc.arch,
        "weights": weights_id(weights, cfg.seed, enc.arch),
        "input_size": cfg.features.input_size,
        "mode": mode,
        "dense_rule": DENSE_RULE if mode == "dense" else None,
    }


def feature_inputs(cfg: StudyConfig, run_dir: Path, name: str, patches_fp: str) -> dict[str, Any]:
    """What the features of encoder or hand-crafted set ``name`` depend on, from the config
    as it is now (a study's pre-trained weights are checked against their run first)."""
    if name in cfg.features.handcrafted:
        return {"patches": patches_fp, "handcrafted": name}
    enc = next((e for e in cfg.features.encoders if e.name == name), None)
    if enc is None:
        valid = [e.name for e in cfg.features.encoders] + list(cfg.features.handcrafted)
        raise ConfigError(f"no encoder or hand-crafted features {name!r} in the config; "
                          f"valid: {valid}")  # fmt: skip
    return encoder_inputs(cfg, enc, current_weights(enc, cfg, run_dir), patches_fp)


def checked_record(run_dir: Path, name: str, layer: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The record of ``features/<name>/<layer>``, refused unless computed from ``inputs``
    (:func:`feature_inputs`), e.g. after the patches were cut again or the arch or weights
    changed.

    Raises:
        StaleError: naming the file, what changed and `skintl features`.
    """
    meta = run_dir / "features" / name / f"{layer}.json"
    check_record(meta, inputs, meta.with_suffix(".npy"), "features")
    return {**json.loads(meta.read_text()), "inputs": inputs}  # records may predate "inputs"


def _is_valid(folder: Path, layer: str, fp: str, shape: tuple[int, int]) -> bool:
    if not fingerprint_matches(folder / f"{layer}.json", fp):
        return False
    try:
        return np.load(folder / f"{layer}.npy", mmap_mode="r").shape == shape
    except (OSError, ValueError):
        return False


def _checked_weights(cfg: StudyConfig, run_dir: Path) -> dict[str, str]:
    """Each encoder's weights, checked for patients shared with the study (which is refused
    unless ``allow_shared_patients``) before any work."""
    out = {}
    runs = {f"pretrain:{r.name}": r for r in cfg.pretrain}
    for enc in cfg.features.encoders:
        out[enc.name] = weights = current_weights(enc, cfg, run_dir)
        if weights in ("random", "imagenet"):
            continue
        run = runs.get(enc.weights)
        allowed = enc.allow_shared_patients or (run is not None and run.allow_shared_patients)
        _, _, provenance = read_encoder_file(Path(weights))
        shared = check_encoder_patients(enc.name, weights, provenance, cfg, run_dir, allowed)
        overlap = run_dir / "features" / enc.name / "overlap.json"
        if shared and run is None:  # a study's own runs record theirs in pretrain/
            write_json({"shared_patients": shared, "weights": weights}, overlap)
        else:
            overlap.unlink(missing_ok=True)
    return out


def run_features(cfg: StudyConfig, run_dir: Path, progress: bool = True) -> None:
    """Extract every configured layer of every encoder, computing only what is missing.

    The patches are checked against the config first (up the chain); stale ones are refused.
    """
    patches_fp = check_patches(cfg, run_dir)
    weights = _checked_weights(cfg, run_dir)
    patches, index = load_patches(run_dir)
    f = cfg.features
    run_handcrafted(cfg, run_dir, patches, patches_fp)
    for enc in f.encoders:
        folder = run_dir / "features" / enc.name
        inputs = encoder_inputs(cfg, enc, weights[enc.name], patches_fp)
        fp, mode = fingerprint(inputs), inputs["mode"]
        info = layer_info(enc.arch)
        missing = [
            layer
            for layer in f.encoder_layers(enc)
            if not _is_valid(folder, layer, fp, (len(index), info[layer].channels))
        ]
        if not missing:
            log.info("features of %s up to date", enc.name)
            continue
        torch.manual_seed(cfg.seed)  # random-init encoders are reproducible
        net, provenance = load_backbone(enc.arch, weights[enc.name])
        if mode == "dense":
            feats = _dense(cfg, index, net, info, missing, progress)
        else:
            feats = extract_features(
                net,
                patches,
                missing,
                f.batch_size,
                f.input_size,
                progress,
                desc=f"features {enc.name}",
                device=f.device,
            )
        for layer in missing:
            invalidate(folder / f"{layer}.json")
            write_npy(feats[layer], folder / f"{layer}.npy")
            meta: dict[str, Any] = {
                "fingerprint": fp,
                "inputs": inputs,
                "patches_fingerprint": patches_fp,
                "encoder": enc.model_dump(),
                "layer": layer,
                "tap": {"name": layer, **dataclasses.asdict(info[layer])},
                "shape": list(feats[layer].shape),
                "provenance": provenance,
                "input_size": f.input_size,
                "mode": mode,
            }
            write_json(meta, folder / f"{layer}.json")


def _dense(
    cfg: StudyConfig, index: Any, net: Any, info: Any, layers: list[str], progress: bool
) -> dict[str, np.ndarray]:
    """Dense features of the patches, pooled from their whole photos (``features.mode``)."""
    from skintl.data.sources import read_rgb

    if cfg.data.source == "patch_folders":
        raise ConfigError(
            "features.mode dense pools patches from their photos, but data.source "
            "patch_folders has no photos: use mode: patch"
        )
    photos = index.groupby("image_idx")["image"].first()
    paths = [str(photos.get(i, "")) for i in range(int(index["image_idx"].max()) + 1)]
    return dense_patch_features(
        net, {k: v.stride for k, v in info.items()}, paths, index["image_idx"].to_numpy(),
        index["y"].to_numpy(), index["x"].to_numpy(), cfg.patches.size, layers,
        lambda p: read_rgb(Path(p), cfg.data.max_image_pixels),  # oriented as the patches
        cfg.features.dense_tile, cfg.features.device, progress,
    )  # fmt: skip


def run_handcrafted(cfg: StudyConfig, run_dir: Path, patches: np.ndarray, patches_fp: str) -> None:
    """Descriptors of the classical baselines, cached as ``features/<name>/handcrafted.npy``."""
    for name in cfg.features.handcrafted:
        folder = run_dir / "features" / name
        inputs = {"patches": patches_fp, "handcrafted": name}
        fp = fingerprint(inputs)
        meta = folder / f"{HANDCRAFTED_LAYER}.json"
        if fingerprint_matches(meta, fp):
            continue
        log.info("hand-crafted features %s of %d patches", name, len(patches))
        feats = handcrafted_features(name, patches)
        invalidate(meta)
        write_npy(feats, folder / f"{HANDCRAFTED_LAYER}.npy")
        record = {"fingerprint": fp, "inputs": inputs, "patches_fingerprint": patches_fp,
                  "handcrafted": name, "shape": list(feats.shape)}  # fmt: skip
        write_json(record, meta)


def load_features(run_dir: Path, encoder: str, layer: str) -> np.ndarray:
    """The cached (N, C) features of one (encoder, layer), refused when they were computed from
    other patches than the run's (check them against the config with :func:`checked_record`)."""
    path = run_dir / "features" / encoder / f"{layer}.json"
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise StaleError(
            f"{path.with_suffix('.npy')}: no features yet; run `skintl features CONFIG` first"
        ) from None
    if meta.get("patches_fingerprint") != patches_fingerprint(run_dir):
        raise StaleError(
            f"{path.with_suffix('.npy')} was computed from other patches than the run's current "
            "ones; rerun `skintl features CONFIG` (or `skintl study CONFIG`)"
        )
    x = np.load(run_dir / "features" / encoder / f"{layer}.npy")
    if list(x.shape) != list(meta["shape"]):
        raise StaleError(
            f"{run_dir / 'features' / encoder / layer}.npy has shape {x.shape}, its record "
            f"says {meta['shape']}; run `skintl features CONFIG` to recompute it"
        )
    return x
