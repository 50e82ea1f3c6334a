"""``skintl check CONFIG``: validate a study's data without writing a run directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from skintl.config import StudyConfig
from skintl.data.sources import build_manifest


def check_data(cfg: StudyConfig) -> str:
    """Read and validate the configured data source; returns a one-line summary.

    Generated data (synthetic photos, rasterised polygon masks) goes to a temporary folder that
    is removed afterwards.

    Raises:
        DataProblems: every problem found, with their count (the scan stage's manifest columns
            and photos included).
    """
    from skintl.data.validate import DataProblems
    from skintl.scan.stage import scan_input_problems

    with tempfile.TemporaryDirectory(prefix="skintl-check-") as tmp:
        manifest = build_manifest(cfg, Path(tmp))
    problems = scan_input_problems(cfg, manifest)
    if problems:
        raise DataProblems(problems)
    what = "patches" if cfg.data.source == "patch_folders" else "photos"
    return (
        f"data OK: {len(manifest)} {what} of {manifest['patient_id'].nunique()} patients "
        f"({cfg.data.source})"
    )
