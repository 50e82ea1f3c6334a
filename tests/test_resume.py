"""Runs are reproducible, and a study killed mid-run resumes to identical results."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from skintl.cli import main
from studyhelpers import tiny_config, write_config


@pytest.fixture(scope="module")
def config(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("resume")
    # the scikit-learn logistic regression is fitted fold by fold, keeping each finished fold:
    # the study is killed inside that cell, so the resume of a half-finished cell is tested
    cfg = tiny_config(synthetic_root, evaluation={"logreg": {"implementation": "sklearn"}})
    return write_config(tmp / "tiny.yaml", cfg)


@pytest.fixture(scope="module")
def reference(config: Path) -> pd.DataFrame:
    run = config.parent / "reference"
    assert main(["study", str(config), "--run-dir", str(run)]) == 0
    return pd.read_csv(run / "evaluation" / "metrics.csv")


def test_same_seed_same_metrics(config: Path, reference: pd.DataFrame) -> None:
    run = config.parent / "again"
    assert main(["study", str(config), "--run-dir", str(run)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(run / "evaluation" / "metrics.csv"), reference)


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
        assert proc.poll() is None, "the study ended before it could be interrupted"
        time.sleep(0.02)
    raise TimeoutError(pattern)


def test_killed_study_resumes_to_identical_results(config: Path, reference: pd.DataFrame) -> None:
    run = config.parent / "killed"
    cmd = [sys.executable, "-m", "skintl.cli", "study", str(config), "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # let one cell finish and the next one start, then kill without warning
        done = _wait_for("evaluation/r18/layer1/mlp/metrics.json", run, proc)
        _wait_for("evaluation/r18/layer1/logreg/partial-*/fold_*.npy", run, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not (run / "evaluation" / "metrics.csv").exists()  # it really was interrupted
    finished_at = done.stat().st_mtime_ns
    assert main(["study", str(config), "--run-dir", str(run)]) == 0
    assert done.stat().st_mtime_ns == finished_at  # the finished cell was not recomputed
    pd.testing.assert_frame_equal(pd.read_csv(run / "evaluation" / "metrics.csv"), reference)
    assert not list(run.glob("evaluation/**/partial-*"))  # partial folds cleaned up
    assert not list(run.rglob(".*.tmp"))  # no half-written file left under a final name
