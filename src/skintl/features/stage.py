"""The ``features`` stage: cached pooled features per (encoder, layer).

``features/<encoder>/<layer>.npy`` holds (N, C) float32; the ``.json`` beside it, written last,
marks it complete and records what it was computed from. A cell is recomputed only when that
record no longer matches (other patches, weights or input size) or the array is unreadable.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skintl.config import ConfigError, StudyConfig
from skintl.data.stage import load_patches
from skintl.encoders.backbones import layer_info, load_backbone
from skintl.features.dense import DENSE_RULE, dense_patch_features
from skintl.features.extract import extract_features
from skintl.features.handcrafted import HANDCRAFTED_LAYER, handcrafted_features
from skintl.io import write_json, write_npy
from skintl.pretrain.stage import resolve_weights
from skintl.rundir import (
    StaleError,
    fingerprint,
    fingerprint_matches,
    invalidate,
    patches_fingerprint,
    sha256_file,
)

log = logging.getLogger(__name__)


def weights_id(weights: str, seed: int) -> str:
    if weights == "random":
        return f"random-seed{seed}"
    if weights == "imagenet":
        return "torchvision-imagenet1k-v1"
    return sha256_file(Path(weights))


def _record_valid(meta: Path, fp: str, patches_fp: str) -> bool:
    """Whether a features record holds ``fp`` and names the current patches."""
    if not fingerprint_matches(meta, fp):
        return False
    return bool(json.loads(meta.read_text()).get("patches_fingerprint") == patches_fp)


def _is_valid(folder: Path, layer: str, fp: str, patches_fp: str, shape: tuple[int, int]) -> bool:
    if not _record_valid(folder / f"{layer}.json", fp, patches_fp):
        return False
    try:
        return np.load(folder / f"{layer}.npy", mmap_mode="r").shape == shape
    except (OSError, ValueError):
        return False


def run_features(cfg: StudyConfig, run_dir: Path, progress: bool = True) -> None:
    """Extract every configured layer of every encoder, computing only what is missing."""
    patches, index = load_patches(run_dir)
    patches_fp = patches_fingerprint(run_dir)
    f = cfg.features
    run_handcrafted(cfg, run_dir, patches, patches_fp)
    for enc in f.encoders:
        folder = run_dir / "features" / enc.name
        weights = resolve_weights(enc.weights, run_dir)
        mode = enc.mode or f.mode
        fp = fingerprint(
            {
                "patches": patches_fp,
                "arch": enc.arch,
                "weights": weights_id(weights, cfg.seed),
                "input_size": f.input_size,
                "mode": mode,
                "dense_rule": DENSE_RULE if mode == "dense" else None,
            }
        )
        info = layer_info(enc.arch)
        missing = [
            layer
            for layer in f.layers
            if not _is_valid(folder, layer, fp, patches_fp, (len(index), info[layer].channels))
        ]
        if not missing:
            log.info("features of %s up to date", enc.name)
            continue
        torch.manual_seed(cfg.seed)  # random-init encoders are reproducible
        net, provenance = load_backbone(enc.arch, weights)
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
                "patches_fingerprint": patches_fp,
                "encoder": enc.model_dump(),
                "layer": layer,
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
        fp = fingerprint({"patches": patches_fp, "handcrafted": name})
        meta = folder / f"{HANDCRAFTED_LAYER}.json"
        if _record_valid(meta, fp, patches_fp):
            continue
        log.info("hand-crafted features %s of %d patches", name, len(patches))
        feats = handcrafted_features(name, patches)
        invalidate(meta)
        write_npy(feats, folder / f"{HANDCRAFTED_LAYER}.npy")
        record = {"fingerprint": fp, "patches_fingerprint": patches_fp, "handcrafted": name,
                  "shape": list(feats.shape)}  # fmt: skip
        write_json(record, meta)


def features_record(run_dir: Path, encoder: str, layer: str) -> dict[str, Any]:
    """The JSON record of one cached (encoder, layer), checked against the current patches.

    Raises:
        StaleError: when the features are missing or were computed from other patches
            (patches re-cut since), which would pair feature rows with the wrong patches.
    """
    path = run_dir / "features" / encoder / f"{layer}.json"
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise StaleError(
            f"{path.with_suffix('.npy')}: no features yet; run `skintl features CONFIG` first"
        ) from None
    now = patches_fingerprint(run_dir)
    if meta.get("patches_fingerprint") != now:
        raise StaleError(
            f"{path.with_suffix('.npy')} was computed from other patches than the run's current "
            f"ones (patches {meta.get('patches_fingerprint')} -> {now}); run "
            "`skintl features CONFIG` (or `skintl study`) to recompute it"
        )
    return meta


def load_features(run_dir: Path, encoder: str, layer: str) -> np.ndarray:
    """The cached (N, C) features of one (encoder, layer), refused when they are stale."""
    meta = features_record(run_dir, encoder, layer)
    x = np.load(run_dir / "features" / encoder / f"{layer}.npy")
    if list(x.shape) != list(meta["shape"]):
        raise StaleError(
            f"{run_dir / 'features' / encoder / layer}.npy has shape {x.shape}, its record "
            f"says {meta['shape']}; run `skintl features CONFIG` to recompute it"
        )
    return x
