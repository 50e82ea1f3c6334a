"""A tiny finished study (features of one ResNet-18 layer in both modes) and its bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from studyhelpers import tiny_config, write_config


@pytest.fixture(scope="session")
def scan_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skintl.config import load_config
    from skintl.data.stage import run_data, run_patches
    from skintl.features.stage import run_features
    from skintl.study import prepare_run_dir

    tmp = tmp_path_factory.mktemp("scan-run")
    raw = tiny_config(
        synthetic_root,
        features={
            "encoders": [
                {"name": "r18", "arch": "resnet18", "weights": "random"},
                {"name": "r18-dense", "arch": "resnet18", "weights": "random", "mode": "dense"},
            ],
            "layers": ["layer2"],
        },
    )
    cfg = load_config(write_config(tmp / "tiny.yaml", raw))
    run = prepare_run_dir(cfg, tmp / "run")
    run_data(cfg, run)
    run_patches(cfg, run)
    run_features(cfg, run, progress=False)
    return run


@pytest.fixture(scope="session")
def dense_bundle(scan_run: Path) -> Path:
    from skintl.scan.export import make_bundle

    out = scan_run.parent / "dense.bundle"
    make_bundle(scan_run, "r18-dense", "layer2", "logreg", out)
    return out


@pytest.fixture(scope="session")
def patch_bundle(scan_run: Path) -> Path:
    from skintl.scan.export import make_bundle

    out = scan_run.parent / "patch.bundle"
    make_bundle(scan_run, "r18", "layer2", "logreg", out)
    return out
