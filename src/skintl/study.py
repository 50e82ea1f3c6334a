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
    """Create the run directory and record the resolved config in it (``config.yaml``).

    Called once a stage is up to date with ``cfg``, never before: the report and
    ``skintl bundle`` check the run's files against this config.
    """
    return rundir.prepare_run_dir(dump_config(cfg), run_dir)


def counts_summary(counts: pd.DataFrame, run_dir: Path, max_rows: int = 30) -> str:
    """The patients x classes table of :func:`counts_table`, or, with many patients, each
    class's total and its min / median / max over patients; says where the full table is."""
    full = run_dir / "patches" / "counts.csv"
    per_patient = counts.drop(index="total")
    if len(per_patient) <= max_rows:
        return f"patches per patient and class (also in {full}):\n{counts.to_string()}"
    stats = per_patient.describe().loc[["min", "50%", "max"]].rename(index={"50%": "median"})
    table = pd.concat([counts.loc[["total"]].astype(str), stats.map("{:g}".format)])
    return (
        f"patches per class over {len(per_patient)} patients (total, and min / median / max "
        f"per patient; every patient in {full}):\n{table.to_string()}"
    )


def run_study(cfg: StudyConfig, run_dir: Path, report: bool = True) -> pd.DataFrame:
    """All stages in order; finished work in ``run_dir`` is reused. Returns the metrics table."""
    with rundir.removed_on_failure(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        run_data(cfg, run_dir)
    if cfg.scan is not None:  # refuse a scan stage that would fail, before the long work
        from skintl.data.check import scan_input_problems
        from skintl.data.validate import DataProblems

        problems = scan_input_problems(cfg, pd.read_parquet(run_dir / "manifest.parquet"))
        if problems:
            raise DataProblems(problems)
    run_patches(cfg, run_dir)
    _, index = load_patches(run_dir)
    log.info("%s", counts_summary(counts_table(index, cfg.classes), run_dir))
    run_pretrain(cfg, run_dir)
    run_features(cfg, run_dir)
    table = run_evaluation(cfg, run_dir)
    write_text(summary_text(table), run_dir / "summary.txt")
    prepare_run_dir(cfg, run_dir)  # every stage the scan and the report read is up to date
    if cfg.scan is not None:
        from skintl.scan.stage import run_scan

        run_scan(cfg, run_dir)
    if report:
        from skintl.report.html import write_report

        log.info("report: %s", write_report(run_dir))
    return table
