"""Bad input stops early with one clear message naming the file or row and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
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
        ({"features": {"layers": ["layer9"]}, "name": "x"}, "has no layers ['layer9']"),
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


def _add_rows(root: Path, rows: list[dict[str, str]]) -> None:
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    extra = pd.DataFrame([{**meta.iloc[0].to_dict(), **r} for r in rows])
    pd.concat([meta, extra]).to_csv(root / "metadata.csv", index=False)


@pytest.fixture
def many_problems(tmp_path: Path) -> tuple[Path, list[str]]:
    """8 patients x 2 photos of 64 px with 12 kinds of problem (13 messages), and their texts."""
    from skintl.data.synthetic import generate

    root = tmp_path / "data"
    generate(root, n_patients=8, images_per_patient=2, size=64, seed=3)
    img, msk = root / "images", root / "masks"
    (img / "P001_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    (msk / "P001_2.png").write_bytes(b"garbage")
    Image.open(msk / "P002_1.png").resize((60, 64)).save(msk / "P002_1.png")
    Image.fromarray((np.asarray(Image.open(msk / "P002_2.png")) > 0).astype(np.uint8) * 3).save(
        msk / "P002_2.png"
    )
    (img / "P003_1.png").unlink()
    (msk / "P003_2.png").unlink()
    Image.open(img / "P004_1.png").resize((128, 128)).save(img / "P004_1.png")
    shutil.copy(img / "P005_1.png", img / "P005_1_copy.png")
    shutil.copy(img / "P006_1.png", img / "P006_1_again.png")
    meta = pd.read_csv(root / "metadata.csv", dtype=str)
    meta.loc[meta["image"] == "images/P007_1.png", "patient_id"] = " "
    meta.to_csv(root / "metadata.csv", index=False)
    _add_rows(
        root,
        [
            {"image": "images/P008_1.png", "mask": "masks/P008_1.png", "patient_id": "P008"},
            {"image": "images/P005_1_copy.png", "mask": "masks/P005_1.png", "patient_id": "P009"},
            {"image": "images/P006_1_again.png", "mask": "masks/P006_1.png", "patient_id": "P006"},
            {"image": "../../etc/passwd", "mask": "masks/P008_2.png", "patient_id": "P010"},
            {"image": "/etc/hostname", "mask": "masks/P008_2.png", "patient_id": "P011"},
        ],
    )
    expected = [
        "P001_1.png: cannot decode image",
        "P001_2.png: cannot decode mask",
        "P002_1.png: mask is 60x64",
        "P002_2.png: pixel values [3]",
        "P003_1.png: image file not found",
        "P003_2.png: mask file not found",
        "P004_1.png: image refused as a possible decompression bomb",
        "row 18: lists",  # P008_1 listed twice
        "row 19) (patient P009) has the same pixels as",
        "row 20) has the same pixels as",
        "row 21: path '../../etc/passwd' points outside the data root",
        "row 22: path '/etc/hostname' points outside the data root",
        "row 14: empty patient_id",
    ]
    return root, expected


@pytest.mark.parametrize("command", ["check", "data", "study"])
def test_one_run_lists_every_problem(
    many_problems: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    command: str,
) -> None:
    root, expected = many_problems
    cfg = tiny_config(root, data={"max_image_pixels": 64 * 64})
    config = write_config(tmp_path / "c.yaml", cfg)
    run = tmp_path / "runs" / "bad"
    args = [command, str(config)] + ([] if command == "check" else ["--run-dir", str(run)])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    missing = [e for e in expected if e not in err]
    assert not missing, err
    assert "data.max_image_pixels" in err
    assert f"{len(expected)} problems in the input data" in err
    assert not (tmp_path / "runs").exists()  # no half-made run directory, nor its parent


def test_problem_list_is_capped_but_counted(
    many_problems: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, expected = many_problems
    cfg = tiny_config(root, data={"max_image_pixels": 64 * 64, "max_problems": 5})
    assert main(["check", str(write_config(tmp_path / "c.yaml", cfg))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n- ") == 5 and f"... and {len(expected) - 5} more" in err
    assert f"{len(expected)} problems" in err


def test_check_passes_clean_data_and_writes_nothing(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["check", str(write_config(tmp_path / "c.yaml", tiny_config(synthetic_root)))]) == 0
    assert "data OK: 4 photos of 4 patients" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [*before, "c.yaml"]
