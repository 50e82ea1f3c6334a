"""features.mode: dense pools training patches from their photos, cached apart from patch mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from skintl.config import ConfigError, parse_config
from skintl.data.sources import read_rgb
from skintl.data.stage import load_patches, run_data, run_patches
from skintl.encoders.backbones import build_backbone
from skintl.features.dense import geometry, truncated_backbone, window_features
from skintl.features.stage import load_features, run_features
from studyhelpers import tiny_config


@pytest.fixture(scope="module")
def run_dir(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tiny_config(
        synthetic_root,
        features={
            "encoders": [
                {"name": "patch", "arch": "resnet18", "weights": "random"},
                {"name": "dense", "arch": "resnet18", "weights": "random", "mode": "dense"},
            ],
            "layers": ["layer2"],
            "dense_tile": 64,
        },
    )
    cfg = parse_config(raw)
    run = tmp_path_factory.mktemp("dense-stage")
    run_data(cfg, run)
    run_patches(cfg, run)
    run_features(cfg, run, progress=False)
    return run


def test_dense_features_are_pooled_from_the_photo(run_dir: Path) -> None:
    _, index = load_patches(run_dir)
    dense = load_features(run_dir, "dense", "layer2")
    patch = load_features(run_dir, "patch", "layer2")
    assert dense.shape == patch.shape == (len(index), 128)
    torch.manual_seed(0)  # the study's seed: the same random encoder
    trunk = truncated_backbone(build_backbone("resnet18"), "layer2")
    geo = geometry(trunk, 8, 32)
    first = index[index["image_idx"] == index["image_idx"].iloc[0]]
    photo = read_rgb(Path(first["image"].iloc[0]))
    ref = window_features(trunk, photo, geo, first["y"].to_numpy(), first["x"].to_numpy(), None)
    np.testing.assert_allclose(dense[first.index], ref, rtol=1e-4, atol=1e-4)
    # context changes the features: dense is not the isolated patch
    assert not np.allclose(dense, patch, atol=1e-3)


def test_mode_is_in_the_fingerprint_and_record(run_dir: Path) -> None:
    d = json.loads((run_dir / "features" / "dense" / "layer2.json").read_text())
    p = json.loads((run_dir / "features" / "patch" / "layer2.json").read_text())
    assert d["mode"] == "dense" and p["mode"] == "patch"
    assert d["fingerprint"] != p["fingerprint"]  # same encoder and weights, different mode
    # each record names its tap with the arch's channels, stride and module
    assert d["tap"] == {"name": "layer2", "channels": 128, "stride": 8, "module": "layer2"}


def test_dense_with_input_size_is_a_config_error(synthetic_root: Path) -> None:
    raw = tiny_config(synthetic_root, features={"mode": "dense", "input_size": 64})
    with pytest.raises(ConfigError, match=r"dense features.*input_size"):
        parse_config(raw)
