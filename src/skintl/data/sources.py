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
from PIL import Image, UnidentifiedImageError

from skintl.config import DataConfig, StudyConfig
from skintl.labels import HEALTHY

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
SPLIT_FOLDERS = {"train", "test", "val", "valid", "validation"}
MANIFEST_COLUMNS = ["image_path", "annotation", "patient_id", "labels", "source"]


class DataError(ValueError):
    """Bad input data; the message names the file or row and the fix."""


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image as (H, W, 3) uint8, or raise :class:`DataError` naming the file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found (check the metadata path)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(
            f"{path}: cannot decode image ({e}); replace the file or drop its row from the metadata"
        ) from None


def read_mask(path: Path) -> np.ndarray:
    """Decode a label mask as (H, W) uint8 (first channel if it has several)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found (check the metadata path)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: cannot decode mask ({e}); replace the file") from None
    return arr[..., 0] if arr.ndim == 3 else arr


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
    """Manifest of a folder of images + label masks + a metadata CSV (validated)."""
    meta_path, df = _read_metadata(data)
    assert data.root is not None
    if df.empty:
        raise DataError(f"{meta_path}: no rows left after data.include={data.include}")
    rows = []
    for i, rec in df.iterrows():
        ref = _row_ref(meta_path, int(str(i)))
        patient = rec[data.patient_column].strip()
        if not patient:
            raise DataError(f"{ref}: empty {data.patient_column}; every photo needs a patient id")
        diagnosis = rec[data.label_column].strip()
        if data.mask_mode == "binary" and diagnosis not in data.diagnosis_to_class:
            raise DataError(
                f"{ref}: diagnosis {diagnosis!r} is not in data.diagnosis_to_class "
                f"{data.diagnosis_to_class}; map it to a class or exclude it with data.include"
            )
        image_path = data.root / rec[data.image_column]
        mask_path = data.root / rec[data.mask_column]
        _check_pair(image_path, mask_path, data)
        rows.append(
            {
                **rec.to_dict(),
                "image_path": str(image_path),
                "annotation": str(mask_path),
                "patient_id": patient,
                "labels": diagnosis,
                "source": "masked_folder",
            }
        )
    out = pd.DataFrame(rows)
    return out[MANIFEST_COLUMNS + [c for c in out.columns if c not in MANIFEST_COLUMNS]]


def _check_pair(image_path: Path, mask_path: Path, data: DataConfig) -> None:
    image = read_rgb(image_path)
    mask = read_mask(mask_path)
    if mask.shape != image.shape[:2]:
        raise DataError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path.name} "
            f"is {image.shape[1]}x{image.shape[0]}; masks must match their image's size"
        )
    if data.mask_mode == "multiclass":
        unknown = sorted(set(np.unique(mask).tolist()) - {0} - set(data.mask_values))
        if unknown:
            raise DataError(
                f"{mask_path}: pixel values {unknown} are not in data.mask_values "
                f"{data.mask_values}; declare their classes there"
            )


def _patch_class(folder: str, data: DataConfig, classes: list[str], path: Path) -> str:
    aliases = {k.lower(): v for k, v in data.class_aliases.items()}
    aliases.update({c.lower(): c for c in classes})
    try:
        return aliases[folder.lower()]
    except KeyError:
        raise DataError(
            f"{path}: class folder {folder!r} is neither a class {classes} nor in "
            f"data.class_aliases {data.class_aliases}; add an alias (e.g. {folder}: {HEALTHY})"
        ) from None


def patch_folders_manifest(data: DataConfig, classes: list[str]) -> pd.DataFrame:
    """Manifest of already-cut patches laid out as ``<patient>/[TRAIN|TEST/]<class>/*.png``.

    A TRAIN/TEST level may also sit above the patient folders; it is kept as ``split``.
    """
    assert data.root is not None
    rows = []
    for path in sorted(data.root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        parts = list(path.relative_to(data.root).parts[:-1])
        split = [p for p in parts if p.lower() in SPLIT_FOLDERS]
        rest = [p for p in parts if p.lower() not in SPLIT_FOLDERS]
        if len(rest) != 2:
            raise DataError(
                f"{path}: expected <patient>/[TRAIN|TEST/]<class>/<file> under {data.root}, "
                f"found folders {parts}"
            )
        patient, folder = rest
        cls = _patch_class(folder, data, classes, path)
        rows.append(
            {
                "image_path": str(path),
                "annotation": cls,
                "patient_id": patient,
                "labels": cls,
                "source": "patch_folders",
                "split": split[0].upper() if split else "",
            }
        )
    if not rows:
        raise DataError(f"{data.root}: no image files found (expected <patient>/<class>/*.png)")
    return pd.DataFrame(rows)


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
    """The data config to read: synthetic data is generated into the run directory first."""
    data = cfg.data
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
    """Read the configured source into a validated manifest (generating synthetic data first)."""
    data = effective_data_config(cfg, run_dir)
    if data.source == "patch_folders":
        manifest = patch_folders_manifest(data, cfg.classes)
    else:
        manifest = masked_folder_manifest(data, cfg.classes)
    manifest = _exclude_patients(manifest, data.exclude_patients)
    log.info("manifest: %d rows, %d patients", len(manifest), manifest["patient_id"].nunique())
    return manifest
