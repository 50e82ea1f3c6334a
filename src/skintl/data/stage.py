"""The ``data`` and ``patches`` stages: manifest and labelled patches in the run directory."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skintl.config import DataConfig, ExcludeConfig, StudyConfig
from skintl.data.ink import INK_RULE_VERSION, InkRule, ink_mask
from skintl.data.orientation import ORIENTATION_RULE
from skintl.data.patches import (
    DROPPED_CODE,
    HEALTHY_CODE,
    PatchRule,
    cap_per_class,
    cut_patches,
    grid_origins,
    label_patches,
    window_fractions,
)
from skintl.data.sources import (
    ARTEFACTS,
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
    check_record,
    content_hashes,
    fingerprint,
    fingerprint_matches,
    invalidate,
    sha256_file,
    stale,
)

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["patient_id", "image", "image_idx", "class", "x", "y"]
#: per-patch shares of ink and of hand-drawn artefacts, when the data stage looks for them
COVERAGE_COLUMNS = ["ink_fraction", "artefact_fraction"]


def data_settings(cfg: StudyConfig, run_dir: Path) -> dict[str, Any]:
    """Every setting that changes what the manifest and the patches' labels mean."""
    data = effective_data_config(cfg, run_dir)
    # defaults left out: a setting added later at a default that keeps the old behaviour does
    # not invalidate finished work; the extra metadata's content is recorded on its own
    dump = data.model_dump(mode="json", exclude_defaults=True, exclude={"extra_metadata"})
    out = {"data": dump, "classes": cfg.classes}
    if data.ink.detect:  # the ink columns depend on every threshold and on the rule's code
        out["ink"] = {**data.ink.model_dump(mode="json"), "rule_version": INK_RULE_VERSION}
    return out


def extra_metadata_hash(cfg: StudyConfig) -> str | None:
    """SHA-256 of the ``data.extra_metadata`` CSV (None without one).

    Recorded in ``manifest.json`` apart from the fingerprint that the patches chain: an edited
    CSV rebuilds the manifest (and the report's subgroup tables), never the patches or features.
    """
    path = cfg.data.extra_metadata
    return None if path is None else sha256_file(path)


def _file_columns(manifest: pd.DataFrame) -> list[str]:
    """Manifest columns naming files besides the photo: annotations, artefact masks."""
    return ["annotation"] + [c for c in (ARTEFACTS,) if c in manifest.columns]


def _hash_files(manifest: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Content hashes of every photo and annotation file (class-name annotations hash to "")."""
    images = manifest["image_path"].tolist()
    cols = _file_columns(manifest)
    # class-name annotations (patch folders) and photos without an artefact mask are no files
    present = {c: manifest[c].map(lambda a: os.path.isabs(a) and os.path.isfile(a)) for c in cols}
    files = [p for c in cols for p in manifest[c][present[c]].tolist()]
    # one pass over the hash cache for photos and annotations alike
    hashes = content_hashes(images + files, run_dir / "file-hashes.json")
    out = manifest.assign(image_sha256=hashes[: len(images)])
    start = len(images)
    for c in cols:
        col = np.full(len(manifest), "", dtype=object)
        n = int(present[c].sum())
        col[present[c].to_numpy()] = hashes[start : start + n]
        out[f"{c}_sha256"] = col
        start += n
    return out


def _ink_columns(manifest: pd.DataFrame, data: DataConfig) -> pd.DataFrame:
    """``ink_fraction`` (share of each photo's pixels that are ink) and ``has_ink``."""
    if not data.ink.detect or (manifest["source"] == "patch_folders").all():
        return manifest
    rule = ink_rule(data)
    paths = manifest["image_path"].tolist()
    frac = [float(ink_mask(read_rgb(Path(p), data.max_image_pixels), rule).mean())
            for p in progress(paths, "ink", "photo")]  # fmt: skip
    out = manifest.assign(ink_fraction=frac)
    out["has_ink"] = out["ink_fraction"] > data.ink.min_fraction
    log.info("ink: %d of %d photos (ink on more than %.2f%% of the pixels); per label: %s",
             out["has_ink"].sum(), len(out), 100 * data.ink.min_fraction,
             out.groupby("labels")["has_ink"].sum().to_dict())  # fmt: skip
    return out


def ink_rule(data: DataConfig) -> InkRule:
    """The ink rule of the data config's ``ink`` settings."""
    settings = data.ink.model_dump(exclude={"detect"})
    return InkRule(**settings)


def run_data(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Build and validate the manifest; writes ``manifest.parquet`` and ``manifest.json``.

    The manifest holds every file's content hash and, with ``data.ink.detect``, each photo's
    ink fraction; ``manifest.json`` (written last) holds the fingerprint of the settings and
    rows, which the patches stage chains into its own.
    """
    invalidate(run_dir / "manifest.json")
    source = _hash_files(read_source(cfg, run_dir), run_dir)
    source = _ink_columns(source, effective_data_config(cfg, run_dir))
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
    names = ["image_path", *_file_columns(manifest)]
    try:
        now = _hash_files(manifest[names], run_dir)
    except OSError as e:
        return f"a listed file cannot be read ({e})"
    for name in names:
        col = "image_sha256" if name == "image_path" else f"{name}_sha256"
        changed = np.flatnonzero(now[col].to_numpy() != manifest[col].to_numpy())
        if len(changed):
            return f"{manifest[name].iloc[changed[0]]} changed ({len(changed)} file(s) in all)"
    return None


def check_manifest(cfg: StudyConfig, run_dir: Path) -> str:
    """The manifest's fingerprint, refused when it no longer describes the config and files.

    Raises:
        StaleError: naming the reason and `skintl data`, which rebuilds the manifest.
    """
    reason = manifest_stale_reason(cfg, run_dir)
    if reason is not None:
        raise stale(run_dir / "manifest.parquet", reason, "data")
    return str(json.loads((run_dir / "manifest.json").read_text())["fingerprint"])


def current_manifest(cfg: StudyConfig, run_dir: Path) -> tuple[pd.DataFrame, str]:
    """The manifest and its fingerprint, rebuilt first when the config or a file changed."""
    reason = manifest_stale_reason(cfg, run_dir)
    if reason is not None:
        log.info("data stage: rebuilding the manifest (%s)", reason)
        run_data(cfg, run_dir)
    meta = json.loads((run_dir / "manifest.json").read_text())
    return load_manifest(run_dir), str(meta["fingerprint"])


def _coverage_maps(row: pd.Series, image: np.ndarray, data: DataConfig) -> dict[str, np.ndarray]:
    """(H, W) bool maps whose share of each patch the index records, by index column."""
    maps = {}
    if data.ink.detect:
        maps["ink_fraction"] = ink_mask(image, ink_rule(data))
    if data.artefact_mask_column is not None:
        path = row.get(ARTEFACTS) or ""
        art = read_mask(Path(path), data.max_image_pixels) > 0 if path else None
        maps["artefact_fraction"] = art if art is not None else np.zeros(image.shape[:2], bool)
    return maps


def excluded(index: pd.DataFrame, exclude: ExcludeConfig) -> dict[str, np.ndarray]:
    """Per reason (ink, artefacts), which rows of a patch index ``patches.exclude`` drops."""
    out = {}
    if exclude.ink:
        out["ink"] = (index["ink_fraction"] > exclude.max_ink_fraction).to_numpy()
    if exclude.artefacts:
        out["artefacts"] = (index["artefact_fraction"] > exclude.max_artefact_fraction).to_numpy()
    return out


def _patches_of_photo(
    row: pd.Series, cfg: StudyConfig, data: DataConfig, rng: np.random.Generator
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The photo's patches, their index rows, and the rows ``patches.exclude`` dropped."""
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
    index = pd.DataFrame(
        {
            "patient_id": row["patient_id"],
            "image": row["image_path"],
            "class": names,
            "x": xs[gx],
            "y": ys[gy],
        }
    )
    for col, m in _coverage_maps(row, image, data).items():
        index[col] = window_fractions(m, p.size, p.stride)[gy, gx]
    drop = np.zeros(len(index), bool)
    for rows in excluded(index, p.exclude).values():
        drop |= rows
    dropped, index = index[drop], index[~drop].reset_index(drop=True)
    keep = cap_per_class(index["class"].to_numpy(), p.max_per_image_class, rng)
    index = index.iloc[keep].reset_index(drop=True)
    return cut_patches(image, index["y"].to_numpy(), index["x"].to_numpy(), p.size), index, dropped


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


def patches_inputs(cfg: StudyConfig, manifest_fp: str) -> dict[str, Any]:
    """What the patches depend on: every ``patches`` setting, the classes, the seed (the cap's
    draw) and the manifest's fingerprint. Their fingerprint is the patches' fingerprint."""
    settings = cfg.patches.model_dump(mode="json")
    ex = cfg.patches.exclude
    if not (ex.ink or ex.artefacts):  # no effect, so runs from before it existed stay valid
        del settings["exclude"]
    return {
        "patches": settings,
        "classes": cfg.classes,
        "seed": cfg.seed,
        "manifest": manifest_fp,
        "orientation": ORIENTATION_RULE,
    }  # how photos and masks were read


def check_patches(cfg: StudyConfig, run_dir: Path) -> str:
    """The fingerprint of the run's patches, rebuilt from the config up the chain (manifest,
    then patches) and refused when the files on disk were made from anything else.

    Raises:
        StaleError: naming the stale stage (`skintl data` or `skintl patches`) and the change.
    """
    inputs = patches_inputs(cfg, check_manifest(cfg, run_dir))
    out = run_dir / "patches"
    return check_record(out / "meta.json", inputs, out, "patches")


def run_patches(cfg: StudyConfig, run_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut labelled patches of every manifest row; writes ``patches/``. Skips when up to date."""
    manifest, manifest_fp = current_manifest(cfg, run_dir)
    out = run_dir / "patches"
    inputs = patches_inputs(cfg, manifest_fp)
    fp = fingerprint(inputs)
    if fingerprint_matches(out / "meta.json", fp):
        log.info("patches up to date in %s", out)
        return load_patches(run_dir)
    invalidate(out / "meta.json")
    rng = np.random.default_rng(cfg.seed)
    data = effective_data_config(cfg, run_dir)
    arrays, tables, dropped = [], [], []
    unit = "patch" if (manifest["source"] == "patch_folders").all() else "photo"
    for i, (_, row) in enumerate(progress(list(manifest.iterrows()), "patches", unit)):
        if row["source"] == "patch_folders":
            arr, idx = _patch_file(row, cfg.patches.size)
        else:
            arr, idx, gone = _patches_of_photo(row, cfg, data, rng)
            dropped.append(gone)
        arrays.append(arr)
        tables.append(idx.assign(image_idx=i))
    patches = np.concatenate(arrays)
    index = pd.concat(tables, ignore_index=True)
    index = index[INDEX_COLUMNS + [c for c in COVERAGE_COLUMNS if c in index.columns]]
    if dropped:
        _log_excluded(pd.concat(dropped, ignore_index=True), cfg)
    _check_classes(index, cfg.classes)
    counts = counts_table(index, cfg.classes)
    write_npy(patches, out / "patches.npy")
    write_parquet(index, out / "index.parquet")
    write_text(counts.to_csv(), out / "counts.csv")
    write_json({"fingerprint": fp, "n": len(index), "inputs": inputs}, out / "meta.json")
    log.info("patches per class: %s", index["class"].value_counts().to_dict())
    return patches, index


def _log_excluded(dropped: pd.DataFrame, cfg: StudyConfig) -> None:
    """Log how many patches of each class ``patches.exclude`` dropped, per reason."""
    for reason, rows in excluded(dropped, cfg.patches.exclude).items():
        counts = dropped["class"][rows].value_counts().reindex(cfg.classes, fill_value=0)
        log.info("patches.exclude.%s: dropped %d patches touching %s beyond the limit, per "
                 "class %s", reason, rows.sum(), reason, counts.to_dict())  # fmt: skip


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
