"""Data sources -> one manifest table.

A manifest has one row per annotated photo (or per already-cut patch) with the columns
``image_path``, ``annotation``, ``patient_id`` and ``labels`` (image-level labels), followed by
the source's own metadata columns. Every problem a long run would hit later (corrupt image, mask
of the wrong size, missing patient id, unknown class) is found here, with a message naming the
file or row and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from skintl.config import DataConfig, StudyConfig
from skintl.data.readers import IMAGE_SUFFIXES, MANIFEST_COLUMNS, read_mask, read_rgb
from skintl.data.validate import DataError, Item, Problems, duplicates, inside_root, pixel_hash
from skintl.progress import progress

log = logging.getLogger(__name__)

#: outlines drawn on photos, rasterised into masks by the data stage (skintl.data.polygons)
POLYGON_SOURCES = ("labelme", "coco", "geojson")
#: manifest column of the artefact masks' paths (data.artefact_mask_column)
ARTEFACTS = "artefact_mask"
__all__ = ["IMAGE_SUFFIXES", "MANIFEST_COLUMNS", "DataError", "read_mask", "read_rgb"]


def lesion_label_map(
    mask: np.ndarray, data: DataConfig, diagnosis: str, classes: list[str]
) -> np.ndarray:
    """Per-pixel class index into ``classes`` for lesion pixels, -1 elsewhere.

    Args:
        mask: (H, W) uint8 mask, binary (0 / >0) or multi-class (pixel value -> class).
        data: the data config (mask mode and class mappings).
        diagnosis: the image-level diagnosis (binary masks take its class).
        classes: the study's class names.

    Returns:
        (H, W) int8 map.
    """
    out = np.full(mask.shape, -1, dtype=np.int8)
    if data.mask_mode == "binary":
        out[mask > 127] = classes.index(data.diagnosis_to_class[diagnosis])
    else:
        for value, cls in data.mask_values.items():
            out[mask == value] = classes.index(cls)
    return out


def _row_ref(meta_path: Path, i: int) -> str:
    return f"{meta_path}, row {i + 2}"  # +1 for the header, +1 for 1-based lines


def _read_metadata(data: DataConfig) -> tuple[Path, pd.DataFrame]:
    assert data.root is not None
    meta_path = data.root / data.metadata
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: metadata CSV not found (set data.metadata)")
    df = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    needed = [data.image_column, data.mask_column, data.patient_column, data.label_column]
    needed += list(data.include)
    needed += [data.artefact_mask_column] if data.artefact_mask_column else []
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"{meta_path}: missing columns {missing}; it has {list(df.columns)} "
            "(set data.image_column / mask_column / patient_column / label_column)"
        )
    keep = np.ones(len(df), dtype=bool)
    for col, values in data.include.items():
        keep &= df[col].isin(values).to_numpy()
    return meta_path, df[keep]


def masked_folder_manifest(data: DataConfig, classes: list[str]) -> pd.DataFrame:
    """Manifest of a folder of images + label masks + a metadata CSV (validated).

    Raises:
        DataProblems: every bad row and file at once, duplicates across patients included.
    """
    meta_path, df = _read_metadata(data)
    if df.empty:
        raise DataError(f"{meta_path}: no rows left after data.include={data.include}")
    problems = Problems()
    rows, items = [], []
    first_row: dict[Path, str] = {}
    for i, rec in progress(df.iterrows(), "data", "photo", total=len(df)):
        ref = _row_ref(meta_path, int(str(i)))
        row = problems.attempt(_photo_row, rec, ref, data)
        if row is None:
            continue
        image_path = Path(row["image_path"])
        if image_path in first_row:
            problems.add(
                f"{ref}: lists {image_path} again ({first_row[image_path]} has it): a photo "
                "listed twice counts twice; drop one of the rows"
            )
            continue
        first_row[image_path] = ref
        masks = [Path(row["annotation"])] + ([Path(a)] if (a := row.get(ARTEFACTS)) else [])
        digest = problems.attempt(_check_pair, image_path, masks, data)
        if digest is not None:
            rows.append(row)
            items.append(Item(f"{image_path} ({ref})", row["patient_id"], digest))
    duplicates(items, problems, "photo", within=True)
    problems.raise_if_any(data.max_problems)
    out = pd.DataFrame(rows)
    return out[MANIFEST_COLUMNS + [c for c in out.columns if c not in MANIFEST_COLUMNS]]


def _photo_row(rec: pd.Series, ref: str, data: DataConfig) -> dict:
    """One metadata row as a manifest row; every problem of the row is raised together."""
    assert data.root is not None
    problems = Problems()
    patient = rec[data.patient_column].strip()
    if not patient:
        problems.add(f"{ref}: empty {data.patient_column}; every photo needs a patient id")
    diagnosis = rec[data.label_column].strip()
    if data.mask_mode == "binary" and diagnosis not in data.diagnosis_to_class:
        problems.add(
            f"{ref}: diagnosis {diagnosis!r} is not in data.diagnosis_to_class "
            f"{data.diagnosis_to_class}; map it to a class or exclude it with data.include"
        )
    image_path = problems.attempt(inside_root, data.root, rec[data.image_column], ref)
    mask_path = problems.attempt(inside_root, data.root, rec[data.mask_column], ref)
    extra = {}
    if data.artefact_mask_column:  # the artefact mask's path, or "" for a photo without one
        rel = rec[data.artefact_mask_column].strip()
        path = problems.attempt(inside_root, data.root, rel, ref) if rel else ""
        extra[ARTEFACTS] = str(path)
    problems.raise_if_any(data.max_problems)
    return {
        **rec.to_dict(),
        "image_path": str(image_path),
        "annotation": str(mask_path),
        "patient_id": patient,
        "labels": diagnosis,
        "source": "masked_folder",
        **extra,
    }


def _check_pair(image_path: Path, mask_paths: list[Path], data: DataConfig) -> str:
    """Decode an image and its masks (lesions, then any artefacts) and check they fit.

    Returns:
        The image's pixel hash.
    """
    problems = Problems()
    image = problems.attempt(read_rgb, image_path, data.max_image_pixels)
    masks = [problems.attempt(read_mask, p, data.max_image_pixels) for p in mask_paths]
    for mask_path, m in zip(mask_paths, masks, strict=True):
        if image is not None and m is not None and m.shape != image.shape[:2]:
            problems.add(
                f"{mask_path}: mask is {m.shape[1]}x{m.shape[0]} but its image "
                f"{image_path.name} is {image.shape[1]}x{image.shape[0]}; masks must match "
                "their image's size"
            )
    mask, mask_path = masks[0], mask_paths[0]
    if mask is not None and data.mask_mode == "multiclass":
        unknown = sorted(set(np.unique(mask).tolist()) - {0} - set(data.mask_values))
        if unknown:
            problems.add(
                f"{mask_path}: pixel values {unknown} are not in data.mask_values "
                f"{data.mask_values}; declare their classes there"
            )
    problems.raise_if_any(data.max_problems)
    assert image is not None
    return pixel_hash(image)


def synthetic_data_config(data: DataConfig, root: Path) -> DataConfig:
    """The masked-folder config that reads what the synthetic generator wrote to ``root``."""
    from skintl.labels import AK, SK

    return data.model_copy(
        update={
            "source": "masked_folder",
            "root": root,
            "mask_mode": "multiclass",
            "mask_values": data.mask_values or {1: AK, 2: SK},
            "label_column": "diagnostic",
        }
    )


def effective_data_config(cfg: StudyConfig, run_dir: Path) -> DataConfig:
    """The data config to read the manifest's masks with.

    Synthetic data is generated into the run directory first; polygon sources read the masks
    the data stage rasterised there (pixel value = class index + 1).
    """
    data = cfg.data
    if data.source in POLYGON_SOURCES:
        values = {i + 1: c for i, c in enumerate(cfg.classes)}
        return data.model_copy(update={"mask_mode": "multiclass", "mask_values": values})
    if data.source != "synthetic":
        return data
    from skintl.data.synthetic import generate

    root = run_dir / "synthetic-data"
    if not (root / "metadata.csv").is_file():
        s = data.synthetic
        generate(root, s.n_patients, s.images_per_patient, s.size, s.seed)
    return synthetic_data_config(data, root)


def _exclude_patients(manifest: pd.DataFrame, patients: list[str]) -> pd.DataFrame:
    if not patients:
        return manifest
    drop = manifest["patient_id"].isin(set(patients)).to_numpy()
    log.info(
        "data.exclude_patients: dropped %d of %d rows (%d of %d patients)",
        drop.sum(), len(manifest), manifest.loc[drop, "patient_id"].nunique(),
        manifest["patient_id"].nunique(),
    )  # fmt: skip
    if drop.all():
        raise DataError("data.exclude_patients removes every row: nothing is left to use")
    return manifest[~drop].reset_index(drop=True)


def build_manifest(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Read the configured source into a validated manifest, with ``data.extra_metadata``."""
    return add_extra_metadata(read_source(cfg, run_dir), cfg, run_dir)


def add_extra_metadata(manifest: pd.DataFrame, cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """The manifest with the columns of ``data.extra_metadata`` (unchanged without one)."""
    data = effective_data_config(cfg, run_dir)
    if data.extra_metadata is None:
        return manifest
    from skintl.data.extra_metadata import join_extra_metadata

    assert data.root is not None
    return join_extra_metadata(manifest, data.extra_metadata, data.image_column, data.root)


def read_source(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Read the configured source into a validated manifest (generating synthetic data first)."""
    data = effective_data_config(cfg, run_dir)
    if data.source == "patch_folders":
        from skintl.data.patch_folders import patch_folders_manifest

        manifest = patch_folders_manifest(data, cfg.classes)
    elif data.source in POLYGON_SOURCES:
        from skintl.data.polygons import polygon_manifest

        manifest = polygon_manifest(data, cfg.classes, run_dir / "masks")
    else:
        manifest = masked_folder_manifest(data, cfg.classes)
    manifest = _exclude_patients(manifest, data.exclude_patients)
    log.info("manifest: %d rows, %d patients", len(manifest), manifest["patient_id"].nunique())
    return manifest
