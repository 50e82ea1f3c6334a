"""Hand-crafted baselines and extra classifiers run as cells on the same folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skintl.cli import main
from skintl.evaluation.classifiers import SoftmaxSVC
from studyhelpers import tiny_config, write_config


def test_baselines_share_the_folds(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        synthetic_root,
        features={"layers": ["layer2"], "handcrafted": ["lbp_yiq", "colour_lbp"]},
        evaluation={"classifiers": ["knn", "thesis_mlp"], "handcrafted_classifiers": ["svm_rbf"]},
    )
    cfg["features"] = {**tiny_config(synthetic_root)["features"], **cfg["features"]}
    config = write_config(tmp_path / "c.yaml", cfg)
    assert main(["study", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    table = pd.read_csv(tmp_path / "run" / "evaluation" / "metrics.csv")
    cells = set(zip(table["encoder"], table["layer"], table["classifier"], strict=True))
    assert cells == {
        ("r18", "layer2", "knn"),
        ("r18", "layer2", "thesis_mlp"),
        ("lbp_yiq", "handcrafted", "svm_rbf"),
        ("colour_lbp", "handcrafted", "svm_rbf"),
    }
    feats = np.load(tmp_path / "run" / "features" / "lbp_yiq" / "handcrafted.npy")
    assert feats.shape[1] == 2 * (8 + 2)  # Y and I uniform LBP histograms, P = 8
    ev = tmp_path / "run" / "evaluation"
    a = pd.read_parquet(ev / "lbp_yiq" / "handcrafted" / "svm_rbf" / "predictions.parquet")
    b = pd.read_parquet(ev / "r18" / "layer2" / "knn" / "predictions.parquet")
    assert a[["patch", "fold"]].equals(b[["patch", "fold"]])  # paired by fold


def test_softmax_svc_scores() -> None:
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (30, 4)), rng.normal(3, 1, (30, 4)), rng.normal(-3, 1, (30, 4))]
    y = np.repeat(["a", "b", "c"], 30)
    m = SoftmaxSVC().fit(X, y)
    p = m.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (m.predict(X) == m.svc_.predict(X)).all()  # argmax agrees with the SVC's decision


def test_unknown_classifier_is_a_config_error(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config(synthetic_root, evaluation={"classifiers": ["svm"]})
    config = write_config(tmp_path / "c.yaml", cfg)
    assert main(["study", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown classifier 'svm'" in err and "svm_rbf" in err and "Traceback" not in err
