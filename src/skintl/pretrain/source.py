"""The source set of a pre-training run, read from any skintl data source.

Patches (the default) come from the config's ``data`` and ``patches`` stages, run into the
pre-training folder; whole photos are resized to a square. Labels are class indices (used by the
supervised method); groups say which samples may form multi-instance positives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from skimage.transform import resize

from skintl.config import StudyConfig, dump_config
from skintl.data.sources import read_rgb
from skintl.data.stage import load_patches, run_data, run_patches
from skintl.labels import HEALTHY
from skintl.progress import progress
from skintl.rundir import prepare_run_dir

log = logging.getLogger(__name__)

Positives = Literal["lesion", "patient", "none"]


def positive_groups(
    table: pd.DataFrame, positives: Positives, lesion_ids: pd.Series | None = None
) -> np.ndarray | None:
    """Group of every sample (N,): samples of one group may form a contrastive positive pair.

    Args:
        table: one row a sample with ``patient_id``, ``image`` (its photo) and ``class``.
        positives: ``lesion``: patches of one lesion (same patient and ``lesion_id`` where the
            metadata has one, else same photo) and the same lesion class; healthy patches get a
            group of their own, so healthy skin is never a lesion's positive. ``patient``:
            samples of one patient and one class. ``none``: no groups.
        lesion_ids: ``lesion_id`` per photo path (index: photo), when the metadata has one.

    Returns:
        (N,) int group codes, or None for ``none``.
    """
    if positives == "none":
        return None
    cls = table["class"].astype(str)
    patient = table["patient_id"].astype(str)
    if positives == "patient":
        return pd.factorize(patient + "|" + cls)[0]
    lesion = table["image"].astype(str)
    if lesion_ids is not None:
        lesion = lesion.map(lesion_ids).fillna(lesion).astype(str)
    # lesion ids repeat across patients in some datasets (PAD-UFES-20): a lesion is a pair
    key = patient + "|" + lesion + "|" + cls
    own = pd.Series(np.arange(len(table)), index=table.index).astype(str)
    key = key.where(cls != HEALTHY, "healthy|" + own)
    return pd.factorize(key)[0]


def _lesion_ids(manifest: pd.DataFrame) -> pd.Series | None:
    if "lesion_id" not in manifest:
        return None
    ids = manifest.set_index("image_path")["lesion_id"].astype(str)
    return ids[ids.str.strip() != ""]


def load_source(
    cfg: StudyConfig,
    out_dir: Path,
    kind: Literal["patches", "images"] = "patches",
    image_size: int = 128,
    positives: Positives = "none",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Images (N, S, S, 3) uint8, labels (N,) int, groups (N,) or None, and label names.

    ``positives`` as in :func:`positive_groups` (lesion: patches of one lesion and its class,
    healthy skin never; patient: one patient and one class).
    """
    data_dir = out_dir / "source"
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = run_data(cfg, data_dir)
    if kind == "patches":
        run_patches(cfg, data_dir)
        prepare_run_dir(dump_config(cfg), data_dir)  # the config its stages are up to date with
        patches, index = load_patches(data_dir)
        labels = np.array([cfg.classes.index(c) for c in index["class"]])
        groups = positive_groups(index, positives, _lesion_ids(manifest))
        return np.asarray(patches), labels, groups, cfg.classes
    images = np.stack([
        (resize(read_rgb(Path(p)), (image_size, image_size), anti_aliasing=True) * 255)
        .round().astype(np.uint8)
        for p in progress(list(manifest["image_path"]), "source photos", "photo")
    ])  # fmt: skip
    prepare_run_dir(dump_config(cfg), data_dir)
    codes, names = pd.factorize(manifest["labels"], sort=True)
    table = manifest.assign(image=manifest["image_path"], **{"class": manifest["labels"]})
    groups = positive_groups(table, positives, _lesion_ids(manifest))
    return images, codes, groups, [str(n) for n in names]
