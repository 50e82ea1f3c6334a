"""``skintl check CONFIG``: validate a study's data without writing a run directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

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


def scan_input_problems(cfg: StudyConfig, manifest: pd.DataFrame) -> list[str]:
    """What the scan stage would stumble on, found before any long work: manifest columns that
    ``scan.include``, ``image_column``, ``mask_column`` or ``scan.visits`` name but the manifest
    lacks, and photos or masks of those columns missing on disk (paths relative to data.root)."""
    s = cfg.scan
    if s is None:
        return []
    named = {f"scan.include key {c!r}": c for c in s.include}
    named |= {f"scan.{k} {c!r}": c for k, c in (("image_column", s.image_column),
                                                ("mask_column", s.mask_column)) if c}  # fmt: skip
    if s.visits is not None:
        named |= {f"scan.visits.{k} {c!r}": c for k, c in (("column", s.visits.column),
                  ("site_column", s.visits.site_column)) if c}  # fmt: skip
    problems = [f"{what} is not a manifest column (columns: {', '.join(map(str, manifest))})"
                for what, c in named.items() if c not in manifest]  # fmt: skip
    root = cfg.data.root
    for col in (s.image_column, s.mask_column):
        if problems or col is None or root is None:
            continue
        paths = manifest[col].dropna().astype(str)
        gone = [p for p in paths[paths != ""] if not (root / p).is_file()]
        problems += [f"{root / p}: file of manifest column {col!r} not found" for p in gone]
    return problems
