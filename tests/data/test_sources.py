"""Data sources: the real PAD-UFES folder as it is (patch folders: test_patch_folders.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_PAD
from skintl.config import parse_config
from skintl.data.sources import (
    lesion_label_map,
    masked_folder_manifest,
    read_mask,
)

needs_pad = pytest.mark.skipif(
    not (SHARED_PAD / "metadata.csv").is_file(),
    reason=f"real-data test: PAD-UFES-20 masked subset not found at {SHARED_PAD}",
)


def _pad_config() -> dict:
    return {
        "data": {
            "source": "masked_folder",
            "root": str(SHARED_PAD),
            "include": {"diagnostic": ["ACK", "SEK"]},
            "mask_mode": "binary",
            "diagnosis_to_class": {"ACK": "AK", "SEK": "SK"},
        },
        "features": {"encoders": [{"name": "r18", "arch": "resnet18"}]},
    }


@needs_pad
def test_real_pad_ufes_loader() -> None:
    cfg = parse_config(_pad_config())
    manifest = masked_folder_manifest(cfg.data, cfg.classes)
    assert len(manifest) == 137 + 136  # ACK + SEK photos (the dataset README)
    assert set(manifest["labels"]) == {"ACK", "SEK"}
    assert manifest["patient_id"].str.startswith("PAT_").all()
    row = manifest.iloc[0]
    lab = lesion_label_map(read_mask(Path(row["annotation"])), cfg.data, row["labels"], cfg.classes)
    expected = cfg.classes.index("AK" if row["labels"] == "ACK" else "SK")
    assert set(np.unique(lab)) == {-1, expected}
    assert abs((lab >= 0).mean() - float(row["mask_fraction"])) < 0.01
