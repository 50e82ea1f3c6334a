"""The ``features`` stage: cached pooled features per (encoder, layer).

``features/<encoder>/<layer>.npy`` holds (N, C) float32; the ``.json`` beside it, written last,
marks it complete and records what it was computed from. A cell is recomputed only when that
record no longer matches (other patches, weights or input size) or the array is unreadable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skintl.config import ConfigError, StudyConfig
from skintl.data.stage import load_patches
from skintl.encoders.backbones import layer_info, load_backbone, sha256_file
from skintl.features.dense import DENSE_RULE, dense_patch_features
from skintl.features.extract import extract_features
from skintl.features.handcrafted import HANDCRAFTED_LAYER, handcrafted_features
from skintl.io import write_json, write_npy
from skintl.pretrain.stage import resolve_weights
from skintl.rundir import fingerprint, fingerprint_matches, patches_fingerprint

log = logging.getLogger(__name__)


def weights_id(weights: str, seed: int) -> str:
    if weights == "random":
        return f"random-seed{seed}"
    if weights == "imagenet":
        return "torchvision-imagenet1k-v1"
    return sha256_file(Path(weights))


def _is_valid(folder: Path, layer: str, fp: str, shape: tuple[int, int]) -> bool:
    if not fingerprint_matches(folder / f"{layer}.json", fp):
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
            if not _is_valid(folder, layer, fp, (len(index), info[layer].channels))
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
            write_npy(feats[layer], folder / f"{layer}.npy")
            meta: dict[str, Any] = {
                "fingerprint": fp,
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
        lambda p: read_rgb(Path(p)), cfg.features.dense_tile, cfg.features.device, progress,
    )  # fmt: skip


def run_handcrafted(cfg: StudyConfig, run_dir: Path, patches: np.ndarray, patches_fp: str) -> None:
    """Descriptors of the classical baselines, cached as ``features/<name>/handcrafted.npy``."""
    for name in cfg.features.handcrafted:
        folder = run_dir / "features" / name
        fp = fingerprint({"patches": patches_fp, "handcrafted": name})
        meta = folder / f"{HANDCRAFTED_LAYER}.json"
        if fingerprint_matches(meta, fp):
            continue
        log.info("hand-crafted features %s of %d patches", name, len(patches))
        feats = handcrafted_features(name, patches)
        write_npy(feats, folder / f"{HANDCRAFTED_LAYER}.npy")
        write_json({"fingerprint": fp, "handcrafted": name, "shape": list(feats.shape)}, meta)


def load_features(run_dir: Path, encoder: str, layer: str) -> np.ndarray:
    """The cached (N, C) features of one (encoder, layer)."""
    path = run_dir / "features" / encoder / f"{layer}.npy"
    if not (path.with_suffix(".json")).is_file():
        raise FileNotFoundError(f"{path}: no features yet; run `skintl features CONFIG` first")
    return np.load(path)
