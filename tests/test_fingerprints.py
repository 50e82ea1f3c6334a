"""Every stage's output matches its inputs: changed settings or files are recomputed or refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from studyhelpers import quick_config, run_commands, write_config


@pytest.fixture
def data(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic photos, free to edit."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


def _swap_mask_values(mask: Path) -> None:
    m = np.asarray(Image.open(mask)).copy()
    ak, sk = m == 1, m == 2
    m[ak], m[sk] = 2, 1
    Image.fromarray(m).save(mask)


def test_recut_patches_with_the_same_count_are_not_paired_with_old_features(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg, config, run = quick_config(data), tmp_path / "s.yaml", tmp_path / "run"
    assert run_commands(cfg, config, run) == 0
    before = pd.read_parquet(run / "patches" / "index.parquet")
    cfg["seed"] = 1  # another draw of the capped patches, the same count
    assert run_commands(cfg, config, run, "patches") == 0
    after = pd.read_parquet(run / "patches" / "index.parquet")
    assert len(after) == len(before) and not after.equals(before)
    capsys.readouterr()
    assert run_commands(cfg, config, run, "evaluate") == 2
    err = capsys.readouterr().err
    assert "changed: patches" in err and "rerun `skintl features CONFIG`" in err
    assert "Traceback" not in err and err.count("\n") == 1
    # after the features stage, evaluate runs on features of the current patches
    assert run_commands(cfg, config, run, "features", "evaluate") == 0


def _binary_two_diagnoses(data: Path) -> dict[str, Any]:
    """Binary 0/255 masks; patients P001-P002 diagnosed X, P003-P004 Y; X -> AK, Y -> SK."""
    for mask in sorted((data / "masks").glob("*.png")):
        Image.fromarray(((np.asarray(Image.open(mask)) > 0) * 255).astype(np.uint8)).save(mask)
    meta = pd.read_csv(data / "metadata.csv", dtype=str)
    meta["diagnostic"] = ["X", "X", "Y", "Y"]
    meta.to_csv(data / "metadata.csv", index=False)
    binary = {
        "mask_mode": "binary",
        "mask_values": {},
        "diagnosis_to_class": {"X": "AK", "Y": "SK"},
    }
    return quick_config(data, data=binary)


@pytest.mark.parametrize("change", ["mask_values", "diagnosis_to_class", "mask_file"])
def test_patches_follow_the_class_mapping_and_the_mask_files(
    data: Path, tmp_path: Path, change: str
) -> None:
    cfg = _binary_two_diagnoses(data) if change == "diagnosis_to_class" else quick_config(data)
    config, run = tmp_path / "s.yaml", tmp_path / "run"
    assert run_commands(cfg, config, run, "data", "patches") == 0
    before = pd.read_parquet(run / "patches" / "index.parquet")
    if change == "mask_values":
        cfg["data"]["mask_values"] = {1: "SK", 2: "AK"}
    elif change == "diagnosis_to_class":
        cfg["data"]["diagnosis_to_class"] = {"X": "SK", "Y": "AK"}
    else:
        for mask in sorted((data / "masks").glob("*.png")):
            _swap_mask_values(mask)  # corrected in place, same size and name
    # only the patches stage runs: it must notice the change by itself
    assert run_commands(cfg, config, run, "patches") == 0
    after = pd.read_parquet(run / "patches" / "index.parquet")
    fresh = tmp_path / "fresh"
    assert run_commands(cfg, config, fresh, "data", "patches") == 0
    pd.testing.assert_frame_equal(after, pd.read_parquet(fresh / "patches" / "index.parquet"))
    assert not after["class"].equals(before["class"])


def test_unchanged_inputs_reuse_the_patches(data: Path, tmp_path: Path) -> None:
    cfg, config, run = quick_config(data), tmp_path / "s.yaml", tmp_path / "run"
    assert run_commands(cfg, config, run, "data", "patches") == 0
    meta = run / "patches" / "meta.json"
    stamp = meta.stat().st_mtime_ns
    mask = sorted((data / "masks").glob("*.png"))[0]
    mask.touch()  # a new modification time, the same content
    assert run_commands(cfg, config, run, "data", "patches") == 0
    assert meta.stat().st_mtime_ns == stamp


def test_convergence_warnings_are_counted_and_shown(data: Path, tmp_path: Path) -> None:
    cfg = quick_config(data, evaluation={"logreg": {"C": 1000.0, "max_iter": 10}})
    config, run = tmp_path / "s.yaml", tmp_path / "run"
    write_config(config, cfg)
    from skintl.config import load_config
    from skintl.evaluation.stage import summary_text
    from skintl.study import run_study

    table = run_study(load_config(config), run)
    metrics = json.loads(
        (run / "evaluation" / "r18" / "layer1" / "logreg" / "metrics.json").read_text()
    )
    n_folds = int(pd.read_parquet(run / "evaluation" / "folds.parquet")["fold"].nunique())
    assert metrics["warnings"]["total"]["ConvergenceWarning"] >= n_folds
    assert [f["fold"] for f in metrics["warnings"]["folds"]] == list(range(n_folds))
    assert int(table["convergence_warnings"].iloc[0]) >= n_folds
    assert "convergence warnings in 1 cell(s) (r18/layer1/logreg)" in summary_text(table)
    html = (run / "report" / "index.html").read_text()
    assert "cell r18/layer1/logreg:" in html and "ConvergenceWarning" in html


def test_converged_cells_report_no_warnings(data: Path, tmp_path: Path) -> None:
    config, run = tmp_path / "s.yaml", tmp_path / "run"
    assert run_commands(quick_config(data), config, run) == 0
    metrics = json.loads(
        (run / "evaluation" / "r18" / "layer1" / "logreg" / "metrics.json").read_text()
    )
    assert metrics["warnings"] == {"total": {}, "folds": []}
    assert 'id="warnings"' not in (run / "report" / "index.html").read_text()


def test_report_leaves_out_cells_of_other_patches(data: Path, tmp_path: Path) -> None:
    cfg = quick_config(data, evaluation={"classifiers": ["logreg", "knn"]})
    config, run = tmp_path / "s.yaml", tmp_path / "run"
    assert run_commands(cfg, config, run) == 0
    assert "<code>knn</code>" in (run / "report" / "index.html").read_text()
    cfg["seed"] = 1
    cfg["evaluation"] = {**cfg["evaluation"], "classifiers": ["logreg"]}
    assert run_commands(cfg, config, run) == 0  # the knn cell on disk now belongs to other patches
    html = (run / "report" / "index.html").read_text()
    assert "<code>knn</code>" not in html and "<code>logreg</code>" in html
