"""Bad input stops early with one clear message naming the file or row and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from skintl.cli import main
from studyhelpers import tiny_config, write_config


@pytest.fixture
def data_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    return root


def _run(tmp_path: Path, cfg: dict, capsys: pytest.CaptureFixture) -> str:
    config = write_config(tmp_path / "c.yaml", cfg)
    assert main(["study", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "features").exists()  # stopped before any long work
    return err


def test_corrupt_image(data_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = sorted((data_copy / "images").iterdir())[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    err = _run(tmp_path, tiny_config(data_copy), capsys)
    assert str(bad) in err and "cannot decode image" in err and "replace the file" in err


def test_mask_of_the_wrong_size(
    data_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mask = sorted((data_copy / "masks").iterdir())[0]
    Image.open(mask).resize((100, 90)).save(mask)
    err = _run(tmp_path, tiny_config(data_copy), capsys)
    assert str(mask) in err and "100x90" in err and "128x128" in err


def test_row_without_patient_id(
    data_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    meta = pd.read_csv(data_copy / "metadata.csv", dtype=str)
    meta.loc[2, "patient_id"] = ""
    meta.to_csv(data_copy / "metadata.csv", index=False)
    err = _run(tmp_path, tiny_config(data_copy), capsys)
    assert "metadata.csv, row 4" in err and "patient id" in err


def test_unknown_class_in_config(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config(synthetic_root, data={"mask_values": {1: "AK", 2: "SBL"}})
    err = _run(tmp_path, cfg, capsys)
    assert "data.mask_values" in err and "['SBL']" in err and "classes" in err


def test_mask_value_without_a_class(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = _run(tmp_path, tiny_config(synthetic_root, data={"mask_values": {1: "AK"}}), capsys)
    assert "pixel values [2]" in err and "data.mask_values" in err


def test_unknown_diagnosis_row(
    data_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config(
        data_copy,
        data={
            "mask_mode": "binary",
            "mask_values": {},
            "diagnosis_to_class": {"AK": "AK", "SK": "SK"},
        },
    )
    err = _run(tmp_path, cfg, capsys)
    assert "diagnosis 'AK+SK'" in err and "diagnosis_to_class" in err and "row" in err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"patches": {"sise": 32}}, "patches.sise: unknown key"),
        ({"patches": {"size": "big"}}, "patches.size: Input should be a valid integer"),
        ({"features": {"layers": ["layer9"]}, "name": "x"}, "unknown layers ['layer9']"),
        (
            {"evaluation": {"classifiers": ["mlp"], "splits": {"kind": "random"}}},
            "evaluation.splits.kind",
        ),
        ({"data": {"root": "/nonexistent/folder"}}, "/nonexistent/folder is not a folder"),
    ],
)
def test_config_errors(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, expected: str
) -> None:
    cfg = tiny_config(synthetic_root, **change)
    if "features" in change:
        cfg["features"] = {**tiny_config(synthetic_root)["features"], **change["features"]}
    err = _run(tmp_path, cfg, capsys)
    assert expected in err and "c.yaml" in err


def test_missing_weights_file(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    enc = [{"name": "mine", "arch": "resnet18", "weights": "nowhere.pt"}]
    cfg = tiny_config(synthetic_root, features={"encoders": enc})
    err = _run(tmp_path, cfg, capsys)
    assert "nowhere.pt does not exist" in err and "skintl weights import" in err
