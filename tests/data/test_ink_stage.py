"""Ink and artefact masks in the data and patches stages: columns, exclusion, fingerprints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import circle_perimeter

from skintl.config import ConfigError, StudyConfig, parse_config
from skintl.data import stage
from skintl.data.ink import InkRule, ink_mask
from skintl.data.validate import DataProblems
from studyhelpers import tiny_config

SIZE = 32  # patch size of tiny_config


@pytest.fixture
def data(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic photos (4 patients, 128 px), free to edit."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


def _cfg(root: Path, **overrides: Any) -> StudyConfig:
    raw = tiny_config(root, **overrides)
    raw["patches"] = {**raw["patches"], "max_per_image_class": None, **overrides.get("patches", {})}
    return parse_config(raw)


def _stripe(x0: int, x1: int) -> np.ndarray:
    """A hand-made (128, 128) mask: columns x0..x1-1 of rows 0..63."""
    m = np.zeros((128, 128), bool)
    m[:64, x0:x1] = True
    return m


def _touching(index: pd.DataFrame, masks: dict[str, np.ndarray]) -> np.ndarray:
    """Direct computation: which patches have a mask pixel (a loop over the patches)."""
    out = []
    for img, x, y in index[["image", "x", "y"]].itertuples(index=False):
        m = masks.get(img)
        out.append(m is not None and bool(m[y : y + SIZE, x : x + SIZE].any()))
    return np.array(out)


def _keys(index: pd.DataFrame) -> set[tuple[str, int, int]]:
    return set(index[["image", "x", "y"]].itertuples(index=False, name=None))


def test_ink_exclusion_drops_exactly_the_patches_touching_ink(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a hand-made ink mask, the kept patches are the others, and each patch's
    ink_fraction is the share of its pixels under the mask."""
    hand_made = _stripe(40, 43)
    monkeypatch.setattr(stage, "ink_mask", lambda rgb, rule: hand_made)
    _, all_index = stage.run_patches(_cfg(data), tmp_path / "all")
    cfg = _cfg(data, patches={"exclude": {"ink": True}})
    patches, kept = stage.run_patches(cfg, tmp_path / "kept")
    touching = _touching(all_index, dict.fromkeys(all_index["image"], hand_made))
    assert 0 < touching.sum() < len(all_index)
    assert _keys(kept) == _keys(all_index[~touching])
    assert len(patches) == len(kept)
    expect = [hand_made[y : y + SIZE, x : x + SIZE].mean() for x, y in all_index[["x", "y"]].values]
    np.testing.assert_allclose(all_index["ink_fraction"], expect)


def test_max_ink_fraction_keeps_patches_below_it(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "ink_mask", lambda rgb, rule: _stripe(40, 43))
    _, all_index = stage.run_patches(_cfg(data), tmp_path / "all")
    limit = 0.05  # a 3-px stripe through a whole 32-px patch covers 3/32 = 0.094
    cfg = _cfg(data, patches={"exclude": {"ink": True, "max_ink_fraction": limit}})
    _, kept = stage.run_patches(cfg, tmp_path / "kept")
    assert _keys(kept) == _keys(all_index[all_index["ink_fraction"] <= limit])
    assert (all_index["ink_fraction"] > limit).any() and (kept["ink_fraction"] > 0).any()


def _add_artefacts(root: Path, masks: dict[str, np.ndarray | None]) -> None:
    """Write artefact masks (nonzero = artefact) and name them in a metadata column."""
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    paths = []
    for image in meta["image"]:
        m = masks.get(image)
        if m is None:
            paths.append("")
            continue
        rel = f"artefacts/{Path(image).stem}.png"
        (root / "artefacts").mkdir(exist_ok=True)
        Image.fromarray(m.astype(np.uint8) * 255).save(root / rel)
        paths.append(rel)
    meta.assign(artefacts=paths).to_csv(root / "metadata.csv", index=False)


def test_artefact_masks_are_excluded_like_ink(data: Path, tmp_path: Path) -> None:
    """Two photos with a ruler-like artefact mask, two without (empty cells)."""
    images = pd.read_csv(data / "metadata.csv")["image"].tolist()
    hand_made = {images[0]: _stripe(70, 75), images[2]: _stripe(10, 12)}
    _add_artefacts(data, hand_made)
    _, all_index = stage.run_patches(
        _cfg(data, data={"artefact_mask_column": "artefacts"}), tmp_path / "all"
    )
    cfg = _cfg(
        data, data={"artefact_mask_column": "artefacts"}, patches={"exclude": {"artefacts": True}}
    )
    _, kept = stage.run_patches(cfg, tmp_path / "kept")
    touching = _touching(all_index, {str(data / k): v for k, v in hand_made.items()})
    assert 0 < touching.sum() < len(all_index)
    assert _keys(kept) == _keys(all_index[~touching])
    np.testing.assert_array_equal(all_index["artefact_fraction"] > 0, touching)


def test_artefact_mask_of_the_wrong_size_or_missing_is_reported(data: Path, tmp_path: Path) -> None:
    images = pd.read_csv(data / "metadata.csv")["image"].tolist()
    _add_artefacts(data, {images[0]: np.zeros((100, 128), bool), images[1]: _stripe(0, 2)})
    (data / "artefacts" / f"{Path(images[1]).stem}.png").unlink()
    cfg = _cfg(data, data={"artefact_mask_column": "artefacts"})
    with pytest.raises(DataProblems) as err:
        stage.run_data(cfg, tmp_path / "run")
    msg = str(err.value)
    assert "2 problems" in msg
    assert "mask is 128x100 but its image" in msg
    assert f"{Path(images[1]).stem}.png: mask file not found" in msg


def test_an_edited_artefact_mask_makes_the_manifest_stale(data: Path, tmp_path: Path) -> None:
    images = pd.read_csv(data / "metadata.csv")["image"].tolist()
    _add_artefacts(data, {images[0]: _stripe(0, 2)})
    cfg, run = _cfg(data, data={"artefact_mask_column": "artefacts"}), tmp_path / "run"
    stage.run_data(cfg, run)
    assert stage.manifest_stale_reason(cfg, run) is None
    Image.fromarray(_stripe(5, 9).astype(np.uint8) * 255).save(
        data / "artefacts" / f"{Path(images[0]).stem}.png"
    )
    assert "artefacts" in str(stage.manifest_stale_reason(cfg, run))


def _draw_ink(photo: Path) -> np.ndarray:
    """Draw a faint violet 2-px circle on a photo; returns the photo as written."""
    img = np.asarray(Image.open(photo).convert("RGB")).copy()
    for r in (40, 41):
        rr, cc = circle_perimeter(64, 64, r, shape=img.shape[:2])
        img[rr, cc] = (140, 109, 119)
    Image.fromarray(img).save(photo)
    return np.asarray(Image.open(photo).convert("RGB"))


def test_manifest_records_each_photos_ink(data: Path, tmp_path: Path) -> None:
    images = pd.read_csv(data / "metadata.csv")["image"].tolist()
    inked = _draw_ink(data / images[1])
    manifest = stage.run_data(_cfg(data), tmp_path / "run")
    row = manifest.set_index("image").loc[images[1]]
    assert row["ink_fraction"] == pytest.approx(ink_mask(inked).mean())
    assert row["has_ink"]
    assert manifest["has_ink"].dtype == bool


def test_a_changed_ink_setting_recomputes_the_manifest_and_patches(
    data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = _cfg(data)
    stage.run_patches(cfg, run)
    before = json.loads((run / "patches" / "meta.json").read_text())["fingerprint"]
    assert stage.manifest_stale_reason(cfg, run) is None
    changed = _cfg(data, data={"ink": {"min_violet": 9.0}})
    assert stage.manifest_stale_reason(changed, run) == (
        "the data section or the classes of the config changed"
    )
    stage.run_patches(changed, run)
    after = json.loads((run / "patches" / "meta.json").read_text())["fingerprint"]
    assert after != before
    assert stage.manifest_stale_reason(changed, run) is None


def test_exclusion_settings_are_in_the_patches_fingerprint(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fps = []
    for exclude in ({}, {"ink": True}, {"ink": True, "max_ink_fraction": 0.5}):
        stage.run_patches(_cfg(data, patches={"exclude": exclude}), run)
        fps.append(json.loads((run / "patches" / "meta.json").read_text())["fingerprint"])
    assert len(set(fps)) == 3


@pytest.mark.parametrize(
    ("data_section", "patches", "message"),
    [
        ({"ink": {"detect": False}}, {"exclude": {"ink": True}}, "needs data.ink.detect"),
        ({}, {"exclude": {"artefacts": True}}, "needs data.artefact_mask_column"),
    ],
)
def test_exclusion_without_its_mask_is_a_config_error(
    synthetic_root: Path, data_section: dict[str, Any], patches: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(synthetic_root, data=data_section, patches=patches)


def test_the_configs_ink_defaults_are_the_rules(synthetic_root: Path) -> None:
    """The data stage's rule at default settings is the one the real-data tests check."""
    assert stage.ink_rule(_cfg(synthetic_root).data) == InkRule()
