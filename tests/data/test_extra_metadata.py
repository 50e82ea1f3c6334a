"""``data.extra_metadata``: a CSV of photo-level columns joined to the manifest by image path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from skintl.config import ConfigError, StudyConfig, parse_config
from skintl.data.sources import DataError, build_manifest
from skintl.data.stage import current_manifest, manifest_stale_reason, run_data, run_patches
from studyhelpers import tiny_config


@pytest.fixture
def data(synthetic_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


def _images(root: Path) -> list[str]:
    return pd.read_csv(root / "metadata.csv", dtype=str)["image"].tolist()


def _write(path: Path, rows: dict[str, list[str]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(data: Path, extra: Path) -> StudyConfig:
    # relative to the config's folder, as data.root is
    raw = tiny_config(data, data={"extra_metadata": extra.name})
    return parse_config(raw, base_dir=extra.parent)


def test_columns_are_joined_on_the_image_path(data: Path, tmp_path: Path) -> None:
    images = _images(data)
    ink = [str(i % 2 == 0) for i in range(len(images))]
    extra = _write(tmp_path / "ink.csv", {"image": images[::-1], "ink": ink[::-1], "pen": ""})
    manifest = build_manifest(_config(data, extra), tmp_path / "run")
    by_name = dict(zip(images, ink, strict=True))
    assert manifest["ink"].tolist() == [by_name[i] for i in manifest["image"]]
    assert manifest["pen"].tolist() == [""] * len(images)  # an empty cell: a missing value


def test_a_missing_file_is_a_config_error_naming_it(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.extra_metadata .*nowhere.csv not found"):
        _config(data, tmp_path / "nowhere.csv")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"photo": ["a.png"], "ink": ["1"]}, r"extra.csv: no key column 'image'.*'photo', 'ink'"),
        ({"image": "first_only", "ink": "1"}, r"extra.csv: 3 of 4 photos have no row.*e\.g\. \["),
        ({"image": "duplicated", "ink": "1"}, r"extra.csv: 1 image paths have several rows"),
        ({"image": "all", "patient_id": "x"}, r"extra.csv: columns \['patient_id'\] are already"),
    ],
)
def test_bad_csvs_name_the_file_and_the_fix(
    data: Path, tmp_path: Path, rows: dict[str, object], message: str
) -> None:
    images = _images(data)
    keys = {"first_only": images[:1], "duplicated": [*images, images[0]], "all": images}
    if isinstance(rows.get("image"), str):
        image_keys = keys[str(rows["image"])]
        rows = {k: image_keys if k == "image" else [v] * len(image_keys) for k, v in rows.items()}
    extra = tmp_path / "extra.csv"
    pd.DataFrame(rows).to_csv(extra, index=False)
    with pytest.raises(DataError, match=message):
        build_manifest(_config(data, extra), tmp_path / "run")


def test_the_missing_photos_are_listed(data: Path, tmp_path: Path) -> None:
    images = _images(data)
    extra = _write(tmp_path / "extra.csv", {"image": images[1:], "ink": ["1"] * 3})
    with pytest.raises(DataError) as err:
        build_manifest(_config(data, extra), tmp_path / "run")
    assert "1 of 4 photos" in str(err.value) and images[0] in str(err.value)
    assert images[1] not in str(err.value)


def test_an_edited_csv_rebuilds_the_manifest_but_not_the_patches(
    data: Path, tmp_path: Path
) -> None:
    images = _images(data)
    extra = _write(tmp_path / "extra.csv", {"image": images, "ink": ["0", "1", "0", "1"]})
    cfg, run = _config(data, extra), tmp_path / "run"
    run_data(cfg, run)
    run_patches(cfg, run)
    fp = json.loads((run / "manifest.json").read_text())["fingerprint"]
    patches_meta = run / "patches" / "meta.json"
    stamp = patches_meta.stat().st_mtime_ns
    assert manifest_stale_reason(cfg, run) is None

    _write(extra, {"image": images, "ink": ["1", "1", "0", "1"]})
    assert "data.extra_metadata" in str(manifest_stale_reason(cfg, run))
    manifest, new_fp = current_manifest(cfg, run)
    assert manifest.set_index("image")["ink"][images[0]] == "1"
    assert manifest_stale_reason(cfg, run) is None
    assert new_fp == fp  # what the patches chain: photos, masks and data settings only
    run_patches(cfg, run)
    assert patches_meta.stat().st_mtime_ns == stamp
