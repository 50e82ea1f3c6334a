"""Patch folders, the original study's <case>/TRAIN|TEST/<class> layout above all.

In that layout caseNN/TEST holds patient NN's patches and caseNN/TRAIN holds copies of every
other patient's patches: reading every file as its folder's patient would leak each patient into
its own test fold, so these tests pin patients and unique patch counts exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import SHARED_PAD
from skintl.config import load_config, parse_config
from skintl.data.patch_folders import patch_folders_manifest
from skintl.data.validate import DataError
from studyhelpers import tiny_config, write_config

# patient -> class folder -> number of that patient's own patches
NAMED = {
    "case01": {"AK": 2, "NORM": 1},
    "case02": {"AK": 1, "SBL": 2},
    "case03": {"NORM": 2, "SBL": 1, "AK": 1},
}
NUMERIC_NAMES = {"AK": "0", "NORM": "1", "SBL": "2"}
ALIASES = {"NORM": "healthy", "SBL": "SK"}
NUMERIC_ALIASES = {"0": "AK", "1": "healthy", "2": "SK"}


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_original_layout(root: Path, folder_names: dict[str, str] | None = None) -> Path:
    """3 cases: TEST has the case's own patches, TRAIN renamed copies of every other case's."""
    rename = folder_names or {}
    rng = np.random.default_rng(0)
    own = []
    for case, classes in NAMED.items():
        for cls, n in classes.items():
            for k in range(n):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                own.append((case, rename.get(cls, cls), f"{case}_{cls}_{k}.png", pixels))
    for case, cls, name, pixels in own:
        _save(root / case / "TEST" / cls / name, pixels)
        for other in NAMED:
            if other != case:  # the copies get other names: matching must use the pixels
                _save(root / other / "TRAIN" / cls / f"copy_of_{name}", pixels)
    return root


def _manifest(root: Path, aliases: dict[str, str]):
    cfg = parse_config(
        tiny_config(root, data={"source": "patch_folders", "class_aliases": aliases})
    )
    return patch_folders_manifest(cfg.data, cfg.classes)


def _expected_counts() -> dict[tuple[str, str], int]:
    to_class = {"AK": "AK", **ALIASES}
    return {(p, to_class[c]): n for p, classes in NAMED.items() for c, n in classes.items()}


@pytest.mark.parametrize(("names", "aliases"), [(None, ALIASES), (NUMERIC_NAMES, NUMERIC_ALIASES)])
def test_original_layout_reads_each_patch_once_under_its_test_patient(
    tmp_path: Path,
    names: dict[str, str] | None,
    aliases: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = write_original_layout(tmp_path, names)
    n_files = sum(1 for p in root.rglob("*.png"))
    with caplog.at_level(logging.INFO, logger="skintl"):
        m = _manifest(root, aliases)
    counts = m.groupby(["patient_id", "annotation"]).size().to_dict()
    assert counts == _expected_counts()
    assert len(m) == 10 and m["image_path"].str.contains("/TEST/").all()
    assert set(m["patient_id"]) == {"case01", "case02", "case03"}
    n_copies = n_files - 10
    assert n_copies == 2 * 10  # every patch is also on disk once in each other case's TRAIN
    assert "3 patients, unique patches per class {'AK': 4, 'SK': 3, 'healthy': 3}" in caplog.text
    assert f"{n_copies} duplicate copies dropped" in caplog.text


def test_numeric_class_folders_map_through_yaml_aliases(tmp_path: Path) -> None:
    root = write_original_layout(tmp_path / "data", NUMERIC_NAMES)
    # YAML reads `0: AK` with an int key: the config must still accept it
    text = tiny_config(root, data={"source": "patch_folders", "class_aliases": {}})
    path = write_config(tmp_path / "c.yaml", text)
    path.write_text(
        path.read_text().replace("class_aliases: {}", "class_aliases: {0: AK, 1: healthy, 2: SK}")
    )
    cfg = load_config(path)
    assert cfg.data.class_aliases == NUMERIC_ALIASES
    assert len(patch_folders_manifest(cfg.data, cfg.classes)) == 10


def test_a_patch_under_two_test_folders_names_both_patients(tmp_path: Path) -> None:
    root = write_original_layout(tmp_path)
    leaked = root / "case03" / "TEST" / "AK" / "case01_AK_0.png"
    leaked.write_bytes((root / "case01" / "TEST" / "AK" / "case01_AK_0.png").read_bytes())
    with pytest.raises(DataError) as e:
        _manifest(root, ALIASES)
    msg = str(e.value)
    assert str(leaked) in msg and "patient case03" in msg and "patient case01" in msg
    assert "leak" in msg and "1 problem in the input data" in msg


def test_a_train_patch_without_test_original_is_named(tmp_path: Path) -> None:
    root = write_original_layout(tmp_path)
    orphan = root / "case02" / "TRAIN" / "SBL" / "orphan.png"
    _save(orphan, np.full((8, 8, 3), 7, np.uint8))
    with pytest.raises(DataError, match="no TEST original") as e:
        _manifest(root, ALIASES)
    assert str(orphan) in str(e.value)


def test_copies_that_disagree_on_class_are_named(tmp_path: Path) -> None:
    root = write_original_layout(tmp_path)
    copy = root / "case02" / "TRAIN" / "AK" / "copy_of_case01_AK_0.png"
    moved = root / "case02" / "TRAIN" / "NORM" / copy.name
    moved.parent.mkdir(parents=True, exist_ok=True)
    copy.rename(moved)
    with pytest.raises(DataError) as e:
        _manifest(root, ALIASES)
    msg = str(e.value)
    assert str(moved) in msg and "case01/TEST/AK/case01_AK_0.png" in msg
    assert "class healthy" in msg and "class AK" in msg


def test_plain_patient_folders_refuse_a_patch_of_two_patients(tmp_path: Path) -> None:
    pixels = np.arange(192, dtype=np.uint8).reshape(8, 8, 3)
    _save(tmp_path / "P01" / "AK" / "a.png", pixels)
    _save(tmp_path / "P02" / "AK" / "b.png", pixels)
    _save(tmp_path / "P02" / "NORM" / "c.png", pixels[::-1])
    with pytest.raises(DataError, match=r"P02/AK/b.png \(patient P02\).*P01/AK/a.png"):
        _manifest(tmp_path, ALIASES)


def test_split_above_patients_and_unknown_class_folder(tmp_path: Path) -> None:
    _save(tmp_path / "TRAIN" / "P01" / "AK" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "TEST" / "P02" / "SBL" / "b.png", np.ones((8, 8, 3), np.uint8))
    m = _manifest(tmp_path, ALIASES)
    assert m[["patient_id", "annotation", "split"]].values.tolist() == [
        ["P02", "SK", "TEST"],
        ["P01", "AK", "TRAIN"],
    ]
    _save(tmp_path / "TEST" / "P03" / "BCC" / "c.png", np.full((8, 8, 3), 2, np.uint8))
    with pytest.raises(DataError, match=r"class folder 'BCC'.*class_aliases"):
        _manifest(tmp_path, ALIASES)


@pytest.mark.skipif(
    not (SHARED_PAD / "metadata.csv").is_file(),
    reason=f"real-data test: PAD-UFES-20 masked subset not found at {SHARED_PAD}",
)
def test_real_patches_in_the_original_layout_round_trip(tmp_path: Path) -> None:
    """Patches cut from 3 real PAD-UFES patients, written in the original LOPO layout (TRAIN
    copies included), read back as exactly the patients and counts they were cut as."""
    from skintl.data.stage import counts_table, run_data, run_patches

    meta = pd.read_csv(SHARED_PAD / "metadata.csv")
    patients = sorted(meta.loc[meta["diagnostic"].isin(["ACK", "SEK"]), "patient_id"])[:3]
    data = {
        "root": str(SHARED_PAD),
        "include": {"patient_id": patients},
        "mask_mode": "binary",
        "diagnosis_to_class": {"ACK": "AK", "SEK": "SK"},
        "mask_values": {},
    }
    cfg = parse_config(tiny_config(SHARED_PAD, data=data))
    run_data(cfg, tmp_path / "run")
    patches, index = run_patches(cfg, tmp_path / "run")
    root = tmp_path / "lopo"
    for k, row in index.iterrows():
        for case in patients:
            split = "TEST" if case == row["patient_id"] else "TRAIN"
            _save(root / case / split / str(row["class"]) / f"{k}.png", patches[k])
    read = _manifest(root, {})
    expected = counts_table(index, cfg.classes).drop(index="total")
    got = pd.crosstab(read["patient_id"], read["annotation"]).reindex(
        columns=cfg.classes, fill_value=0
    )
    assert got.to_dict() == expected.to_dict()
