"""Modes follow the bundle: a bundle scans only in the modes its classifier was trained for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skintl.cli import main
from skintl.config import ConfigError, parse_config
from skintl.scan.bundle import BundleError, load_bundle
from skintl.scan.scanner import window_probabilities
from skintl.scan.windows import Windows
from studyhelpers import tiny_config


@pytest.fixture(scope="module")
def image(synthetic_root: Path) -> Path:
    return sorted((synthetic_root / "images").glob("*.png"))[0]


@pytest.mark.parametrize(
    ("which", "mode", "named"),
    [("dense", "exact", "dense"), ("dense", "superpixel", "dense"), ("patch", "dense", "patch")],
)
def test_a_mode_the_bundle_was_not_trained_for_is_refused(
    request: pytest.FixtureRequest, image: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture, which: str, mode: str, named: str,
) -> None:  # fmt: skip
    bundle = request.getfixturevalue(f"{which}_bundle")
    rc = main(["scan", str(bundle), str(image), "--mode", mode, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"feature mode {named!r}" in err and str(bundle) in err
    assert not (tmp_path / "o" / "scan_metrics.csv").exists()
    b = load_bundle(bundle)
    win = Windows(np.zeros(1, int), np.zeros(1, int), 0, np.zeros((40, 40), int))
    with pytest.raises(BundleError, match=f"feature mode {named!r}"):  # the library too
        window_probabilities(b, np.zeros((40, 40, 3), np.uint8), win, mode)


@pytest.mark.parametrize(("which", "expected"), [("dense", "dense"), ("patch", "exact")])
def test_the_mode_defaults_to_the_bundle(
    request: pytest.FixtureRequest, image: Path, tmp_path: Path, which: str, expected: str
) -> None:
    bundle = request.getfixturevalue(f"{which}_bundle")
    assert main(["scan", str(bundle), str(image), "--stride", "16", "-o", str(tmp_path)]) == 0
    assert pd.read_csv(tmp_path / "scan_metrics.csv")["mode"].tolist() == [expected]


def _cfg(root: Path, **scan: object) -> dict:
    raw = tiny_config(
        root,
        features={
            "encoders": [
                {"name": "p", "arch": "resnet18", "weights": "random"},
                {"name": "d", "arch": "resnet18", "weights": "random", "mode": "dense"},
            ],
            "layers": ["layer2"],
        },
    )
    raw["scan"] = scan
    return raw


def test_scan_stage_modes_follow_the_bundles(synthetic_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"exact needs a bundle of patch features, but encoder "
                       r"'d' has dense features"):  # fmt: skip
        parse_config(_cfg(synthetic_root, encoder="d", modes=["dense", "exact"]))
    with pytest.raises(ConfigError, match=r"dense needs a bundle of dense features, but encoder "
                       r"'p' has patch features"):  # fmt: skip
        parse_config(_cfg(synthetic_root, encoder="p", modes=["dense"]))
    both = parse_config(_cfg(synthetic_root, encoder="d", patch_encoder="p",
                             modes=["dense", "exact", "superpixel"]))  # fmt: skip
    assert both.scan is not None and both.scan.encoder_for("exact") == "p"
    for encoder, default in (("d", ["dense"]), ("p", ["exact"])):
        cfg = parse_config(_cfg(synthetic_root, encoder=encoder))
        assert cfg.scan is not None and cfg.scan.scan_modes(cfg.features) == default
    none = parse_config(_cfg(synthetic_root, encoder="d", modes=[]))
    assert none.scan is not None and none.scan.scan_modes(none.features) == []
