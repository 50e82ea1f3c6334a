"""`skintl bundle` and `skintl scan` end to end on the tiny study's synthetic photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skintl.cli import main


@pytest.fixture(scope="module")
def photo_and_mask(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A training photo of the tiny study and a binary mask of its AK region."""
    image = sorted((synthetic_root / "images").glob("*.png"))[0]
    labels = np.asarray(Image.open(synthetic_root / "masks" / image.name))
    mask = tmp_path_factory.mktemp("mask") / "ak.png"
    Image.fromarray(((labels == 1) * 255).astype(np.uint8)).save(mask)
    return image, mask


def test_bundle_command(scan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b.bundle"
    args = ["bundle", str(scan_run), "--encoder", "r18", "--layer", "layer2"]
    assert main([*args, "--classifier", "mlp", "-o", str(out)]) == 0
    assert "resnet18 layer2 (patch features), mlp on 4 patients" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse lists the scan classifiers
        main([*args, "--classifier", "knn", "-o", str(out)])
    assert "invalid choice: 'knn'" in capsys.readouterr().err


def test_scan_writes_every_output_and_warns_on_training_photos(
    dense_bundle: Path, photo_and_mask: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image, mask = photo_and_mask
    out = tmp_path / "scan"
    with caplog.at_level(logging.WARNING):
        rc = main(["scan", str(dense_bundle), str(image), "--doctor-mask", str(mask),
                   "--skin", "all", "-o", str(out)])  # fmt: skip
    assert rc == 0
    assert any("training" in r.getMessage() and image.name in r.getMessage()
               for r in caplog.records)  # fmt: skip
    stem = image.stem
    for suffix in ("overlay.png", "heatmap.png", "regions.geojson"):
        assert (out / f"{stem}_{suffix}").is_file()
    with Image.open(image) as im:
        size = im.size
    for c in ("AK", "healthy", "SK"):
        with Image.open(out / f"{stem}_prob_{c}.png") as p:
            assert p.size == size
    table = pd.read_csv(out / "scan_metrics.csv")
    assert len(table) == 1 and table["leak_warning"].iloc[0].startswith("a training photo")
    assert 0 <= table["dice"].iloc[0] <= 1 and table["doctor_regions"].iloc[0] >= 1
    gj = json.loads((out / f"{stem}_regions.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    assert f"{stem}_overlay.png" in (out / "index.html").read_text()


@pytest.mark.parametrize("mode", ["exact", "superpixel"])
def test_other_modes(patch_bundle: Path, photo_and_mask: tuple, tmp_path: Path, mode: str) -> None:
    image, _ = photo_and_mask
    labels = image.parent.parent / "masks" / image.name  # multi-class: 1 AK, 2 SK
    rc = main(["scan", str(patch_bundle), str(image), "--doctor-mask", str(labels),
               "--doctor-mask-value", "1", "--mode", mode, "--stride", "16",
               "-o", str(tmp_path)])  # fmt: skip
    assert rc == 0
    row = pd.read_csv(tmp_path / "scan_metrics.csv").iloc[0]
    assert row["mode"] == mode and row["skin_pct"] > 50
    ak_px = int((np.asarray(Image.open(labels)) == 1).sum())  # the bundle's scale is 1 here
    assert row["doctor_area_px"] == pytest.approx(ak_px)


def test_patient_in_training_set_warns(
    scan_run: Path,
    dense_bundle: Path,
    photo_and_mask: tuple,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image, _ = photo_and_mask
    renamed = tmp_path / "new_name.png"
    arr = np.asarray(Image.open(image)).copy()
    arr[0, 0] = 0  # another file: only the patient id can tell
    Image.fromarray(arr).save(renamed)
    index = pd.read_parquet(scan_run / "patches" / "index.parquet")
    patient = str(index["patient_id"].iloc[0])
    with caplog.at_level(logging.WARNING):
        assert main(["scan", str(dense_bundle), str(renamed), "--patient-id", patient,
                     "--stride", "16", "-o", str(tmp_path / "o")]) == 0  # fmt: skip
    assert any(f"patient {patient} is in the bundle's training set" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["scan", str(dense_bundle), str(renamed), "--stride", "16",
                     "-o", str(tmp_path / "o2")]) == 0  # fmt: skip
    assert not any("training" in r.getMessage() for r in caplog.records)


def test_decompression_bomb_via_cli(
    dense_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    Image.new("RGB", (200, 200)).save(tmp_path / "big.png")
    rc = main(["scan", str(dense_bundle), str(tmp_path / "big.png"), "--max-pixels", "1000",
               "-o", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "error" in x]  # the rest is the progress bar
    assert rc == 2 and line.startswith("skintl: error: ") and "big.png: more than 1000" in line
    assert "decompression bomb" in line and "Traceback" not in err


def test_region_iou_option(
    dense_bundle: Path, photo_and_mask: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from skintl.config import ScanConfig
    from skintl.scan.regions import REGION_IOU

    assert ScanConfig(encoder="x").region_iou == REGION_IOU  # one default for stage and CLI
    image, mask = photo_and_mask
    args = ["scan", str(dense_bundle), str(image), "--doctor-mask", str(mask), "--stride", "16"]
    assert main([*args, "--region-iou", "0.5", "-o", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "scan_metrics.csv").iloc[0]
    assert row["region_iou_threshold"] == 0.5
    assert row["region_sensitivity"] <= row["region_sensitivity_any"]
    assert main([*args, "--region-iou", "1.5", "-o", str(tmp_path / "o")]) == 2
    assert "--region-iou 1.5: give an IoU in (0, 1]" in capsys.readouterr().err


def test_missing_photo_fails_before_writing(
    dense_bundle: Path, photo_and_mask: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image, _ = photo_and_mask
    out = tmp_path / "o"
    gone = tmp_path / "gone.png"
    rc = main(["scan", str(dense_bundle), str(image), str(gone), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "1 file(s) not found, nothing scanned" in err and "gone.png" in err
    assert not out.exists()
    rc = main(["scan", str(dense_bundle), str(image), "--doctor-mask", str(tmp_path / "m.png"),
               "-o", str(out)])  # fmt: skip
    assert rc == 2 and "m.png" in capsys.readouterr().err and not out.exists()


def test_undecodable_photo_is_listed_and_the_others_scanned(
    dense_bundle: Path, photo_and_mask: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image, _ = photo_and_mask
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "o"
    rc = main(["scan", str(dense_bundle), str(bad), str(image), "--stride", "16", "-o", str(out)])
    assert rc == 1 and "broken.png" in capsys.readouterr().out
    table = pd.read_csv(out / "scan_metrics.csv", keep_default_na=False)
    assert list(table["error"] != "") == [True, False]
    page = (out / "index.html").read_text()
    assert "Photos not scanned (1)" in page and "broken.png" in page
    assert f"{image.stem}_overlay.png" in page


def test_no_skin_picture_is_flagged(dense_bundle: Path, tmp_path: Path) -> None:
    chart = np.full((96, 128, 3), 255, np.uint8)
    chart[::8] = (30, 60, 200)  # blue lines on white: a chart, no skin
    Image.fromarray(chart).save(tmp_path / "chart.png")
    out = tmp_path / "o"
    assert main(["scan", str(dense_bundle), str(tmp_path / "chart.png"), "-o", str(out)]) == 0
    row = pd.read_csv(out / "scan_metrics.csv").iloc[0]
    assert bool(row["no_skin"]) and row["skin_pct"] < 1
    assert "No skin" in (out / "index.html").read_text()


@pytest.mark.parametrize(
    ("positionals", "expected"),
    [
        (["photo.png"], "looks like a photo, but the first argument is the bundle"),
        (["photo.png", "other.png"], "looks like a photo, but the first argument is the bundle"),
        (["b.bundle"], "no photos to scan: give them after the bundle"),
    ],
)
def test_scan_arguments_say_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture, positionals: list[str], expected: str
) -> None:
    assert main(["scan", *positionals, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "skintl scan BUNDLE PHOTO" in err and "Traceback" not in err


def test_file_names_and_ids_are_text_on_the_page(
    dense_bundle: Path, photo_and_mask: tuple, tmp_path: Path
) -> None:
    image, _ = photo_and_mask
    evil = tmp_path / "<img src=x onerror=alert(1)>.png"
    evil.write_bytes(image.read_bytes())
    out = tmp_path / "o"
    rc = main(["scan", str(dense_bundle), str(evil), "--patient-id", "<b>p1</b>",
               "--stride", "16", "-o", str(out)])  # fmt: skip
    assert rc == 0
    page = (out / "index.html").read_text()
    assert "<img src=x" not in page and "<b>p1" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page and "&lt;b&gt;p1" in page
