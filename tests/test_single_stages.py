"""Single-stage commands after a config edit: each recomputes or refuses, never reuses silently.

Each test replays one of issue 17's demonstrations on the tiny study: the command that would
have run on stale inputs is refused with one line naming the stage to rerun, and leaves the
run's ``config.yaml`` as it was; rerunning the named stages gives what a fresh run gives.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from skintl.cli import main
from studyhelpers import quick_config, run_commands, write_config

Study = tuple[dict[str, Any], Path, Path]


@pytest.fixture(scope="module")
def finished(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Study:
    tmp = tmp_path_factory.mktemp("finished")
    cfg = quick_config(synthetic_root)
    assert run_commands(cfg, tmp / "s.yaml", tmp / "run") == 0
    return cfg, tmp / "s.yaml", tmp / "run"


@pytest.fixture
def study(finished: Study, tmp_path: Path) -> Study:
    """A copy of the finished study (config dict, config path, run directory) to edit."""
    cfg, _, run = finished
    return copy.deepcopy(cfg), tmp_path / "s.yaml", Path(shutil.copytree(run, tmp_path / "run"))


def _refused(argv: list[str], run: Path, stage: str, capsys: pytest.CaptureFixture) -> str:
    """Run ``skintl ARGV``; assert it is refused with one line naming ``skintl STAGE`` and
    leaves ``run/config.yaml`` unchanged. Returns the message."""
    before = (run / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("skintl: error: ") and err.count("\n") == 1, err
    assert f"rerun `skintl {stage} CONFIG`" in err, err
    assert (run / "config.yaml").read_bytes() == before
    return err


def _stage(command: str, config: Path, run: Path) -> list[str]:
    return [command, str(config), "--run-dir", str(run)]


def test_new_patch_settings_are_refused_downstream_until_recut(
    study: Study, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg, config, run = study
    metrics = (run / "evaluation" / "metrics.csv").read_bytes()
    cfg["patches"] = {**cfg["patches"], "stride": 12, "min_lesion_fraction": 0.7}
    write_config(config, cfg)
    for command in ("evaluate", "features"):
        err = _refused(_stage(command, config, run), run, "patches", capsys)
        assert "changed: patches.min_lesion_fraction, patches.stride" in err
    assert (run / "evaluation" / "metrics.csv").read_bytes() == metrics
    assert main(_stage("patches", config, run)) == 0
    assert "stride: 12" in (run / "config.yaml").read_text()  # patches now match it
    _refused(_stage("evaluate", config, run), run, "features", capsys)
    assert run_commands(cfg, config, run, "features", "evaluate") == 0
    assert run_commands(cfg, config, tmp_path / "fresh") == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(run / "evaluation" / "metrics.csv"),
        pd.read_csv(tmp_path / "fresh" / "evaluation" / "metrics.csv"),
    )


def test_another_arch_refuses_the_old_features(study: Study, capsys: pytest.CaptureFixture) -> None:
    cfg, config, run = study
    cfg["features"]["encoders"] = [{"name": "r18", "arch": "resnet50", "weights": "random"}]
    write_config(config, cfg)
    err = _refused(_stage("evaluate", config, run), run, "features", capsys)
    assert "features/r18/layer1.npy" in err and "changed: arch" in err


def test_a_bundle_of_a_run_whose_seed_changed_is_refused(
    study: Study, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg, config, run = study
    cfg["seed"] = 1
    assert run_commands(cfg, config, run, "data") == 0  # the manifest does not depend on it
    assert "seed: 1" in (run / "config.yaml").read_text()
    out = tmp_path / "b.pt"
    argv = ["bundle", str(run), "--encoder", "r18", "--layer", "layer1", "--classifier", "logreg"]
    err = _refused([*argv, "-o", str(out)], run, "patches", capsys)
    assert "changed: seed" in err and not out.exists()
    assert run_commands(cfg, config, run, "patches", "features") == 0
    assert main([*argv, "-o", str(out)]) == 0
    from skintl.scan.bundle import load_bundle

    assert load_bundle(out).meta["weights"] == "random-seed1"


def test_the_report_refuses_cells_of_an_older_config(
    study: Study, capsys: pytest.CaptureFixture
) -> None:
    cfg, config, run = study
    cfg["evaluation"] = {**cfg["evaluation"], "logreg": {"C": 1.0}}
    assert run_commands(cfg, config, run, "features") == 0  # config.yaml now says C = 1
    err = _refused(["report", str(run), "--n-boot", "10"], run, "evaluate", capsys)
    assert "evaluation/r18/layer1/logreg" in err
    assert run_commands(cfg, config, run, "evaluate") == 0
    assert main(["report", str(run), "--n-boot", "10"]) == 0


def test_a_bundle_refuses_an_encoder_file_edited_since_its_features(
    study: Study, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from skintl.encoders.backbones import build_backbone, save_encoder_file

    cfg, config, run = study
    weights = tmp_path / "encoder.pt"
    torch.manual_seed(5)
    save_encoder_file(weights, "resnet18", build_backbone("resnet18").state_dict(), {})
    cfg["features"]["encoders"] = [{"name": "r18", "arch": "resnet18", "weights": str(weights)}]
    assert run_commands(cfg, config, run, "features") == 0
    torch.manual_seed(6)  # other weights in the same file
    save_encoder_file(weights, "resnet18", build_backbone("resnet18").state_dict(), {})
    argv = ["bundle", str(run), "--encoder", "r18", "--layer", "layer1", "--classifier", "logreg"]
    err = _refused([*argv, "-o", str(tmp_path / "b.pt")], run, "features", capsys)
    assert "changed: weights" in err


def test_bundle_refit_warnings_are_recorded_and_printed(
    study: Study, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg, config, run = study
    cfg["evaluation"] = {**cfg["evaluation"], "logreg": {"C": 1000.0, "max_iter": 10}}
    assert run_commands(cfg, config, run, "features") == 0
    out = tmp_path / "b.pt"
    capsys.readouterr()
    argv = ["bundle", str(run), "--encoder", "r18", "--layer", "layer1", "--classifier", "logreg"]
    assert main([*argv, "-o", str(out)]) == 0
    assert "warning: the classifier's refit gave 1 warning(s)" in capsys.readouterr().out
    record = json.loads(torch.load(out, weights_only=True)["meta"])
    assert len(record["warnings"]) == 1
    assert record["warnings"][0].startswith("ConvergenceWarning: logistic regression")


@pytest.mark.parametrize("implementation", ["torch", "sklearn"])
def test_an_mlp_stopped_by_its_epoch_cap_is_a_warning(study: Study, implementation: str) -> None:
    from skintl.config import load_config
    from skintl.evaluation.stage import summary_text
    from skintl.report.context import run_warnings
    from skintl.study import run_study

    cfg, config, run = study
    mlp = {"max_epochs": 1, "patience": 5, "implementation": implementation}
    cfg["evaluation"] = {**cfg["evaluation"], "classifiers": ["mlp"], "mlp": mlp}
    table = run_study(load_config(write_config(config, cfg)), run, report=False)
    metrics = json.loads((run / "evaluation/r18/layer1/mlp/metrics.json").read_text())
    n_folds = len(metrics["folds"])
    assert metrics["warnings"]["total"] == {"ConvergenceWarning": n_folds}
    assert [f["fold"] for f in metrics["warnings"]["folds"]] == list(range(n_folds))
    assert f"{n_folds} convergence warnings in 1 cell(s) (r18/layer1/mlp)" in summary_text(table)
    assert run_warnings(run) == [
        f"cell r18/layer1/mlp: {n_folds} ConvergenceWarning (folds "
        f"{', '.join(map(str, range(n_folds)))}; details in its metrics.json)"
    ]
