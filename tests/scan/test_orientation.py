"""One EXIF rule everywhere: a rotated photo and mask give what the upright pair gives.

The tiny study's photos and masks are stored rotated (or mirrored) with the EXIF tag that shows
them upright; patches, dense features, scans and the scan stage's doctor mask must not change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skintl.config import parse_config
from skintl.data.sources import read_mask, read_rgb
from studyhelpers import tiny_config

#: EXIF orientation -> the transpose that stores an upright image so the tag shows it upright
#: (the inverse of the one ``ImageOps.exif_transpose`` applies)
STORE = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def _store_rotated(src: Path, dst: Path, orientation: int) -> None:
    with Image.open(src) as im:
        stored = im.transpose(STORE[orientation])
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(dst, exif=exif)


@pytest.fixture(scope="module")
def rotated_root(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study with every photo and mask stored rotated, tagged to show upright."""
    root = tmp_path_factory.mktemp("rotated")
    shutil.copy(synthetic_root / "metadata.csv", root / "metadata.csv")
    photos = sorted((synthetic_root / "images").glob("*.png"))
    for folder in ("images", "masks"):
        (root / folder).mkdir()
        for path, o in zip(photos, (6, 3, 8, 5), strict=True):
            _store_rotated(synthetic_root / folder / path.name, root / folder / path.name, o)
    return root


def _run(root: Path, run: Path) -> Path:
    from skintl.data.stage import run_data, run_patches
    from skintl.features.stage import run_features

    raw = tiny_config(
        root,
        features={
            "encoders": [{"name": "d", "arch": "resnet18", "weights": "random", "mode": "dense"}],
            "layers": ["layer2"],
            "dense_tile": 64,
        },
    )
    cfg = parse_config(raw)
    run_data(cfg, run)
    run_patches(cfg, run)
    run_features(cfg, run, progress=False)
    return run


def test_the_fixture_stores_rotated_pixels(synthetic_root: Path, rotated_root: Path) -> None:
    name = sorted((synthetic_root / "images").glob("*.png"))[0].name
    with Image.open(rotated_root / "images" / name) as im:
        raw = np.asarray(im.convert("RGB"))
    upright = read_rgb(synthetic_root / "images" / name)
    assert raw.shape == upright.shape and not np.array_equal(raw, upright)  # 128 px square
    np.testing.assert_array_equal(read_rgb(rotated_root / "images" / name), upright)
    np.testing.assert_array_equal(
        read_mask(rotated_root / "masks" / name), read_mask(synthetic_root / "masks" / name)
    )


def test_rotated_photos_give_the_same_patches_and_dense_features(
    synthetic_root: Path, rotated_root: Path, tmp_path: Path
) -> None:
    from skintl.data.stage import load_patches
    from skintl.features.stage import load_features

    up, rot = _run(synthetic_root, tmp_path / "up"), _run(rotated_root, tmp_path / "rot")
    (p_up, i_up), (p_rot, i_rot) = load_patches(up), load_patches(rot)
    cols = ["patient_id", "class", "x", "y", "image_idx"]
    pd.testing.assert_frame_equal(i_up[cols], i_rot[cols])
    np.testing.assert_array_equal(np.asarray(p_up), np.asarray(p_rot))
    np.testing.assert_allclose(
        load_features(up, "d", "layer2"), load_features(rot, "d", "layer2"), atol=1e-5
    )


def test_the_orientation_rule_is_in_the_patches_fingerprint(
    rotated_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skintl.data import stage

    cfg = parse_config(tiny_config(rotated_root))
    stage.run_data(cfg, tmp_path)
    stage.run_patches(cfg, tmp_path)
    before = json.loads((tmp_path / "patches" / "meta.json").read_text())["fingerprint"]
    monkeypatch.setattr(stage, "ORIENTATION_RULE", "another-rule")
    stage.run_patches(cfg, tmp_path)
    assert json.loads((tmp_path / "patches" / "meta.json").read_text())["fingerprint"] != before


def test_rotated_photo_and_mask_give_the_same_scan(
    synthetic_root: Path, rotated_root: Path, dense_bundle: Path, tmp_path: Path
) -> None:
    from skintl.scan.bundle import load_bundle
    from skintl.scan.run import ScanOptions, scan_photo

    bundle = load_bundle(dense_bundle)
    opts = ScanOptions(stride=16, mask_value=1)
    rows, probs = [], []
    for root in (synthetic_root, rotated_root):
        name = sorted((root / "images").glob("*.png"))[0].name
        out = tmp_path / root.name
        out.mkdir()
        row = scan_photo(bundle, root / "images" / name, out, opts, root / "masks" / name)
        rows.append({k: v for k, v in row.items() if isinstance(v, int | float)})
        with Image.open(out / f"{Path(name).stem}_prob_AK.png") as im:
            probs.append(np.asarray(im))
    assert rows[0]["doctor_regions"] >= 1 and len(rows[0]) > 10
    assert rows[0] == pytest.approx(rows[1], nan_ok=True)
    np.testing.assert_array_equal(probs[0], probs[1])


def test_scan_stage_reads_the_doctor_mask_as_its_photo(
    synthetic_root: Path, rotated_root: Path, tmp_path: Path
) -> None:
    from skintl.scan.stage import _doctor

    masks = []
    for root in (synthetic_root, rotated_root):
        cfg = parse_config(tiny_config(root))
        name = sorted((root / "masks").glob("*.png"))[0]
        row = pd.Series({"mask": str(name), "labels": "AK+SK"})
        masks.append(_doctor(cfg, tmp_path, row))
    assert masks[0][0] == masks[1][0] == "AK"
    np.testing.assert_array_equal(masks[0][1], masks[1][1])
