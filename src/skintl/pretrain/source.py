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
from tqdm import tqdm

from skintl.config import StudyConfig, dump_config
from skintl.data.sources import read_rgb
from skintl.data.stage import load_patches, run_data, run_patches
from skintl.rundir import prepare_run_dir

log = logging.getLogger(__name__)

Positives = Literal["lesion", "patient", "none"]


def _groups(table: pd.DataFrame, image_col: str, positives: Positives) -> np.ndarray | None:
    if positives == "none":
        return None
    col = "patient_id" if positives == "patient" else image_col
    return pd.factorize(table[col])[0]


def load_source(
    cfg: StudyConfig,
    out_dir: Path,
    kind: Literal["patches", "images"] = "patches",
    image_size: int = 128,
    positives: Positives = "none",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Images (N, S, S, 3) uint8, labels (N,) int, groups (N,) or None, and label names.

    ``positives="lesion"`` groups patches of one photo (one lesion per photo in PAD-UFES);
    ``"patient"`` groups all patches or photos of one patient.
    """
    data_dir = prepare_run_dir(dump_config(cfg), out_dir / "source")
    manifest = run_data(cfg, data_dir)
    if kind == "patches":
        run_patches(cfg, data_dir)
        patches, index = load_patches(data_dir)
        labels = np.array([cfg.classes.index(c) for c in index["class"]])
        return np.asarray(patches), labels, _groups(index, "image_idx", positives), cfg.classes
    images = np.stack([
        (resize(read_rgb(Path(p)), (image_size, image_size), anti_aliasing=True) * 255)
        .round().astype(np.uint8)
        for p in tqdm(manifest["image_path"], desc="source photos", unit="photo")
    ])  # fmt: skip
    codes, names = pd.factorize(manifest["labels"], sort=True)
    return images, codes, _groups(manifest, "image_path", positives), [str(n) for n in names]
