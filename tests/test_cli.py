"""The whole CLI on tiny synthetic data: every stage, caching, and the demo config."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from skintl.cli import demo_config, main
from studyhelpers import tiny_config, write_config


@pytest.fixture(scope="module")
def finished_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp / "tiny.yaml", tiny_config(synthetic_root))
    assert main(["study", str(config), "--run-dir", str(tmp / "run")]) == 0
    return tmp


def test_study_writes_every_stage(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    run = finished_run / "run"
    for rel in [
        "config.yaml",
        "manifest.parquet",
        "patches/patches.npy",
        "patches/index.parquet",
        "patches/counts.csv",
        "evaluation/folds.parquet",
        "evaluation/metrics.csv",
        "summary.txt",
        "report/index.html",
        "report/main_table.csv",
    ]:
        assert (run / rel).is_file(), rel
    for layer in ["layer1", "layer2", "layer3", "layer4"]:
        assert (run / "features" / "r18" / f"{layer}.npy").is_file()
    table = pd.read_csv(run / "evaluation" / "metrics.csv")
    assert len(table) == 4 * 2  # layers x classifiers
    assert table["balanced_accuracy"].between(0, 1).all()
    pred = pd.read_parquet(run / "evaluation" / "r18" / "layer2" / "mlp" / "predictions.parquet")
    index = pd.read_parquet(run / "patches" / "index.parquet")
    assert sorted(pred["patch"]) == list(range(len(index)))  # every patch predicted once
    folds = pred.groupby("fold")["patient_id"].nunique()
    assert (folds == 1).all()  # leave-one-patient-out
    text = (run / "summary.txt").read_text()
    assert "classifier = mlp" in text and "layer4" in text and "r18" in text


def test_features_are_not_recomputed(finished_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import skintl.features.stage as stage

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(stage, "extract_features", boom)
    config = finished_run / "tiny.yaml"
    before = (finished_run / "run" / "features" / "r18" / "layer2.npy").stat().st_mtime_ns
    assert main(["features", str(config), "--run-dir", str(finished_run / "run")]) == 0
    after = (finished_run / "run" / "features" / "r18" / "layer2.npy").stat().st_mtime_ns
    assert before == after


def test_a_deleted_layer_alone_is_recomputed(finished_run: Path) -> None:
    run = finished_run / "run"
    folder = run / "features" / "r18"
    kept = (folder / "layer1.npy").stat().st_mtime_ns
    (folder / "layer3.json").unlink()
    assert main(["features", str(finished_run / "tiny.yaml"), "--run-dir", str(run)]) == 0
    assert (folder / "layer3.json").is_file()
    assert (folder / "layer1.npy").stat().st_mtime_ns == kept


def test_evaluate_stage_reuses_finished_cells(
    finished_run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skintl.evaluation.stage as stage

    monkeypatch.setattr(stage, "run_cell", lambda *a, **k: pytest.fail("cell recomputed"))
    assert (
        main(["evaluate", str(finished_run / "tiny.yaml"), "--run-dir", str(finished_run / "run")])
        == 0
    )
    assert "balanced_accuracy" in capsys.readouterr().out


def test_demo_config_is_valid_and_small() -> None:
    cfg = demo_config()
    assert cfg.data.source == "synthetic"
    assert {e.arch for e in cfg.features.encoders} == {"resnet18", "resnet50"}


def test_console_script_help() -> None:
    exe = shutil.which("skintl", path=os.path.dirname(os.sys.executable))
    assert exe, "the skintl console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ["demo", "study", "data", "patches", "features", "evaluate"]:
        assert cmd in out


def test_weights_import_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch
    from torchvision.models import resnet18

    from skintl.encoders.backbones import load_backbone

    src = tmp_path / "resnet18-tv.pth"
    torch.save(resnet18(weights=None).state_dict(), src)
    out = tmp_path / "enc.pt"
    assert main(["weights", "import", str(src), "--format", "torchvision", "-o", str(out)]) == 0
    assert "resnet18 backbone" in capsys.readouterr().out
    _, prov = load_backbone("resnet18", str(out))
    assert prov["format"] == "torchvision" and prov["source_file"] == src.name
    # a torchvision file given as a MoCo checkpoint: one clear message, no traceback
    assert main(["weights", "import", str(src), "--format", "moco", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "skintl: error:" in err and "Traceback" not in err and src.name in err


def test_report_command(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    html = finished_run / "run" / "report" / "index.html"
    html.unlink()
    assert main(["report", str(finished_run / "run"), "--n-boot", "50"]) == 0
    assert html.is_file() and "report:" in capsys.readouterr().out
    assert main(["report", str(finished_run / "nowhere")]) == 2
    assert "no evaluation results" in capsys.readouterr().err


def test_building_the_parser_does_not_import_lightning() -> None:
    """Every command's start-up stays free of Lightning (seconds on a small CPU)."""
    import subprocess
    import sys

    code = "import sys; from skintl.cli import build_parser; build_parser(); "
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_method_names_are_the_registered_methods() -> None:
    from skintl.pretrain import METHODS
    from skintl.pretrain.cli import METHOD_NAMES

    assert sorted(METHOD_NAMES) == sorted(METHODS.names())


def test_study_prints_where_the_report_is(
    finished_run: Path, capsys: pytest.CaptureFixture
) -> None:
    config = finished_run / "tiny.yaml"
    assert main(["study", str(config), "--run-dir", str(finished_run / "run")]) == 0
    out = capsys.readouterr().out
    assert f"report: {finished_run / 'run' / 'report' / 'index.html'}" in out
