"""The ``data`` and ``patches`` stages: manifest and labelled patches in the run directory."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skintl.config import DataConfig, StudyConfig
from skintl.data.patches import (
    DROPPED_CODE,
    HEALTHY_CODE,
    PatchRule,
    cap_per_class,
    cut_patches,
    grid_origins,
    label_patches,
)
from skintl.data.sources import (
    DataError,
    add_extra_metadata,
    effective_data_config,
    lesion_label_map,
    read_mask,
    read_rgb,
    read_source,
)
from skintl.io import write_json, write_npy, write_parquet, write_text
from skintl.labels import HEALTHY
from skintl.progress import progress
from skintl.rundir import (
    content_hashes,
    fingerprint,
    fingerprint_matches,
    invalidate,
    sha256_file,
)

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["patient_id", "image", "image_idx", "class", "x", "y"]


def data_settings(cfg: StudyConfig, run_dir: Path) -> dict[str, Any]:
    """Every setting that changes what the manifest and the patches' labels mean."""
    data = effective_data_config(cfg, run_dir)
    # defaults left out: a setting added later at a default that keeps the old behaviour does
    # not invalidate finished work; the extra metadata's content is recorded on its own
    dump = data.model_dump(mode="json", exclude_defaults=True, exclude={"extra_metadata"})
    return {"data": dump, "classes": cfg.classes}


def extra_metadata_hash(cfg: StudyConfig) -> str | None:
    """SHA-256 of the ``data.extra_metadata`` CSV (None without one).

    Recorded in ``manifest.json`` apart from the fingerprint that the patches chain: an edited
    CSV rebuilds the manifest (and the report's subgroup tables), never the patches or features.
    """
    path = cfg.data.extra_metadata
    return None if path is None else sha256_file(path)


def _hash_files(manifest: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Content hashes of every photo and annotation file (class-name annotations hash to "")."""
    files = manifest["annotation"].map(lambda a: os.path.isabs(a) and os.path.isfile(a))
    images = manifest["image_path"].tolist()
    # one pass over the hash cache for photos and annotations alike
    hashes = content_hashes(
        images + manifest["annotation"][files].tolist(), run_dir / "file-hashes.json"
    )
    ann_hashes = np.full(len(manifest), "", dtype=object)
    ann_hashes[files.to_numpy()] = hashes[len(images) :]
    return manifest.assign(image_sha256=hashes[: len(images)], annotation_sha256=ann_hashes)


def run_data(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Build and validate the manifest; writes ``manifest.parquet`` and ``manifest.json``.

    The manifest holds every file's content hash; ``manifest.json`` (written last) holds the
    fingerprint of the settings and rows, which the patches stage chains into its own.
    """
    invalidate(run_dir / "manifest.json")
    source = _hash_files(read_source(cfg, run_dir), run_dir)
    manifest = add_extra_metadata(source, cfg, run_dir)
    write_parquet(manifest, run_dir / "manifest.parquet")
    settings = data_settings(cfg, run_dir)
    fp = fingerprint({"settings": settings, "manifest": source.to_dict("split")})
    meta = {"fingerprint": fp, "settings": fingerprint(settings)}
    write_json(meta | {"extra_metadata": extra_metadata_hash(cfg)}, run_dir / "manifest.json")
    return manifest


def load_manifest(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "manifest.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run `skintl data CONFIG` (or `skintl study`) first")
    return pd.read_parquet(path)


def manifest_stale_reason(cfg: StudyConfig, run_dir: Path) -> str | None:
    """Why the manifest no longer describes the config and the files, or None when it does."""
    try:
        meta = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "no complete manifest yet"
    if meta.get("settings") != fingerprint(data_settings(cfg, run_dir)):
        return "the data section or the classes of the config changed"
    try:
        if meta.get("extra_metadata") != extra_metadata_hash(cfg):
            return f"data.extra_metadata {cfg.data.extra_metadata} changed"
    except OSError as e:
        return f"data.extra_metadata cannot be read ({e})"
    manifest = load_manifest(run_dir)
    try:
        now = _hash_files(manifest[["image_path", "annotation"]], run_dir)
    except OSError as e:
        return f"a listed file cannot be read ({e})"
    for col in ("image_sha256", "annotation_sha256"):
        changed = np.flatnonzero(now[col].to_numpy() != manifest[col].to_numpy())
        if len(changed):
            name = "image_path" if col == "image_sha256" else "annotation"
            return f"{manifest[name].iloc[changed[0]]} changed ({len(changed)} file(s) in all)"
    return None


def current_manifest(cfg: StudyConfig, run_dir: Path) -> tuple[pd.DataFrame, str]:
    """The manifest and its fingerprint, rebuilt first when the config or a file changed."""
    reason = manifest_stale_reason(cfg, run_dir)
    if reason is not None:
        log.info("data stage: rebuilding the manifest (%s)", reason)
        run_data(cfg, run_dir)
    meta = json.loads((run_dir / "manifest.json").read_text())
    return load_manifest(run_dir), str(meta["fingerprint"])


def _patches_of_photo(
    row: pd.Series, cfg: StudyConfig, data: DataConfig, rng: np.random.Generator
) -> tuple[np.ndarray, pd.DataFrame]:
    p = cfg.patches
    rule = PatchRule(p.size, p.stride, p.min_lesion_fraction, p.healthy_margin)
    image = read_rgb(Path(row["image_path"]), data.max_image_pixels)
    lab = lesion_label_map(
        read_mask(Path(row["annotation"]), data.max_image_pixels), data, row["labels"], cfg.classes
    )
    codes = label_patches(lab, len(cfg.classes), rule)
    ys, xs = grid_origins(lab.shape[0], lab.shape[1], p.size, p.stride)
    gy, gx = np.nonzero(codes != DROPPED_CODE)
    names = np.array([HEALTHY if c == HEALTHY_CODE else cfg.classes[c] for c in codes[gy, gx]])
    keep = cap_per_class(names, p.max_per_image_class, rng)
    gy, gx, names = gy[keep], gx[keep], names[keep]
    index = pd.DataFrame(
        {
            "patient_id": row["patient_id"],
            "image": row["image_path"],
            "class": names,
            "x": xs[gx],
            "y": ys[gy],
        }
    )
    return cut_patches(image, ys[gy], xs[gx], p.size), index


def _patch_file(row: pd.Series, size: int) -> tuple[np.ndarray, pd.DataFrame]:
    from skimage.transform import resize

    img = read_rgb(Path(row["image_path"]))
    if img.shape[:2] != (size, size):
        img = (resize(img, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
    index = pd.DataFrame(
        {
            "patient_id": [row["patient_id"]],
            "image": [row["image_path"]],
            "class": [row["annotation"]],
            "x": [0],
            "y": [0],
        }
    )
    return img[None], index


def run_patches(cfg: StudyConfig, run_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut labelled patches of every manifest row; writes ``patches/``. Skips when up to date."""
    manifest, manifest_fp = current_manifest(cfg, run_dir)
    out = run_dir / "patches"
    fp = fingerprint(
        {
            "patches": cfg.patches.model_dump(),
            "classes": cfg.classes,
            "seed": cfg.seed,
            "manifest": manifest_fp,
        }
    )
    if fingerprint_matches(out / "meta.json", fp):
        log.info("patches up to date in %s", out)
        return load_patches(run_dir)
    invalidate(out / "meta.json")
    rng = np.random.default_rng(cfg.seed)
    data = effective_data_config(cfg, run_dir)
    arrays, tables = [], []
    unit = "patch" if (manifest["source"] == "patch_folders").all() else "photo"
    for i, (_, row) in enumerate(progress(list(manifest.iterrows()), "patches", unit)):
        if row["source"] == "patch_folders":
            arr, idx = _patch_file(row, cfg.patches.size)
        else:
            arr, idx = _patches_of_photo(row, cfg, data, rng)
        arrays.append(arr)
        tables.append(idx.assign(image_idx=i))
    patches = np.concatenate(arrays)
    index = pd.concat(tables, ignore_index=True)[INDEX_COLUMNS]
    _check_classes(index, cfg.classes)
    counts = counts_table(index, cfg.classes)
    write_npy(patches, out / "patches.npy")
    write_parquet(index, out / "index.parquet")
    write_text(counts.to_csv(), out / "counts.csv")
    write_json({"fingerprint": fp, "n": len(index)}, out / "meta.json")
    log.info("patches per class: %s", index["class"].value_counts().to_dict())
    return patches, index


def _check_classes(index: pd.DataFrame, classes: list[str]) -> None:
    present = set(index["class"])
    empty = [c for c in classes if c not in present]
    if not len(index):
        raise DataError("no patches were cut: check patches.size against the image size")
    if empty:
        raise DataError(
            f"no patches of class {empty}: lower patches.min_lesion_fraction or "
            "patches.healthy_margin, or check the class mapping in the config"
        )


def load_patches(run_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """The patches (N, S, S, 3) uint8 (memory-mapped) and their index table."""
    out = run_dir / "patches"
    if not (out / "meta.json").is_file():
        raise DataError(f"{out}: no patches yet; run `skintl patches CONFIG` first")
    return np.load(out / "patches.npy", mmap_mode="r"), pd.read_parquet(out / "index.parquet")


def counts_table(index: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Patches per class (columns) and patient (rows), with a total row."""
    t = pd.crosstab(index["patient_id"], index["class"]).reindex(columns=classes, fill_value=0)
    t.loc["total"] = t.sum()
    return t
