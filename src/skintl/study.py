"""Run a whole study, stage by stage, into one run directory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from skintl import rundir
from skintl.config import StudyConfig, dump_config
from skintl.data.stage import counts_table, load_patches, run_data, run_patches
from skintl.evaluation.stage import run_evaluation, summary_text
from skintl.features.stage import run_features
from skintl.io import write_text
from skintl.pretrain.stage import run_pretrain

log = logging.getLogger(__name__)

STAGES: dict[str, Callable[[StudyConfig, Path], Any]] = {
    "data": run_data,
    "patches": run_patches,
    "pretrain": run_pretrain,
    "features": run_features,
    "evaluate": run_evaluation,
}


def prepare_run_dir(cfg: StudyConfig, run_dir: Path) -> Path:
    """Create the run directory and record the resolved config in it."""
    return rundir.prepare_run_dir(dump_config(cfg), run_dir)


def run_study(cfg: StudyConfig, run_dir: Path, report: bool = True) -> pd.DataFrame:
    """All stages in order; finished work in ``run_dir`` is reused. Returns the metrics table."""
    prepare_run_dir(cfg, run_dir)
    run_data(cfg, run_dir)
    run_patches(cfg, run_dir)
    _, index = load_patches(run_dir)
    log.info("patches per class and patient:\n%s", counts_table(index, cfg.classes).tail(1))
    run_pretrain(cfg, run_dir)
    run_features(cfg, run_dir)
    table = run_evaluation(cfg, run_dir)
    write_text(summary_text(table), run_dir / "summary.txt")
    if cfg.scan is not None:
        from skintl.scan.stage import run_scan

        run_scan(cfg, run_dir)
    if report:
        from skintl.report.html import write_report

        log.info("report: %s", write_report(run_dir))
    return table
