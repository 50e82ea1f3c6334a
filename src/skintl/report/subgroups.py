"""The report's Subgroups section (``report.subgroups``): the file side and the page's rows.

For the best cell of each encoder and every baseline cell, the metrics per value of each
subgroup column (:mod:`skintl.evaluation.subgroups`) are computed from the cell's out-of-fold
predictions, cached in ``<run>/report/cache/subgroups/`` by the predictions, the manifest and
the settings, and written to ``<run>/report/subgroups.csv`` and ``subgroup_tests.csv``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from skintl.config import ReportConfig
from skintl.evaluation.subgroups import (
    MISSING,
    TESTED,
    Grouping,
    subgroup_analysis,
    subgroup_labels,
)
from skintl.io import write_text
from skintl.report.context import fmt, fmt_p
from skintl.report.stage import REPORT_DIR, cached, file_fingerprint, predictions_path
from skintl.report.stats_tables import Cell, _from_json, _to_json, best_cells
from skintl.rundir import sha256_file

log = logging.getLogger(__name__)

SCORES_CSV, TESTS_CSV = "subgroups.csv", "subgroup_tests.csv"
CELL_COLUMNS = ["encoder", "layer", "classifier"]


def subgroup_cells(main: pd.DataFrame, encoders: list[str]) -> list[Cell]:
    """The best cell of each of the study's encoders, then every baseline cell."""
    best = best_cells(main)
    cells = [best[e] for e in encoders if e in best]
    others = main[~main["encoder"].isin(encoders)][CELL_COLUMNS]
    return cells + [Cell(*map(str, r)) for r in others.itertuples(index=False)]


def patch_values(run_dir: Path, manifest: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The manifest's ``columns`` for every patch (rows of ``patches/index.parquet``)."""
    images = pd.read_parquet(run_dir / "patches" / "index.parquet", columns=["image"])["image"]
    return manifest.set_index("image_path").loc[images, columns].reset_index(drop=True)


def groupings(
    values: pd.DataFrame, pred: pd.DataFrame, bins: dict[str, list[float]]
) -> dict[str, Grouping]:
    """Column -> grouping of the predictions' rows (``pred["patch"]`` indexes ``values``)."""
    rows = values.iloc[pred["patch"].to_numpy()].reset_index(drop=True)
    patients = pred["patient_id"].reset_index(drop=True)
    return {c: subgroup_labels(rows[c], patients, bins.get(c)) for c in values.columns}


def cell_subgroups(
    run_dir: Path,
    cell: Cell,
    values: pd.DataFrame,
    rc: ReportConfig,
    classes: list[str],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~skintl.evaluation.subgroups.subgroup_analysis` of one cell, cached."""
    path = predictions_path(run_dir, cell)
    key = {"predictions": file_fingerprint(path), "settings": rc.model_dump(), **params}
    key["manifest"] = file_fingerprint(run_dir / "manifest.parquet")

    def compute() -> dict[str, Any]:
        log.info("report: subgroups of %s", cell.name)
        pred = pd.read_parquet(path).reset_index(drop=True)
        groups = groupings(values, pred, rc.subgroup_bins)
        n_perm = rc.subgroup_permutations
        scores, tests = subgroup_analysis(pred, groups, classes, n_perm=n_perm, **params)
        return {"scores": _to_json(scores), "tests": _to_json(tests)}

    out = cached(run_dir / REPORT_DIR / "cache" / "subgroups" / f"{cell.slug}.json", key, compute)
    cols = dict(zip(CELL_COLUMNS, [cell.encoder, cell.layer, cell.classifier], strict=True))
    return _from_json(out["scores"]).assign(**cols), _from_json(out["tests"]).assign(**cols)


def _stale_extra_metadata(run_dir: Path, cfg: dict[str, Any]) -> str | None:
    extra = (cfg.get("data") or {}).get("extra_metadata")
    try:
        recorded = json.loads((run_dir / "manifest.json").read_text()).get("extra_metadata")
        if extra is None or sha256_file(Path(extra)) == recorded:
            return None
    except (OSError, json.JSONDecodeError):
        return None
    return f"{extra} changed after the manifest was built: rerun `skintl data` (or `study`)"


def subgroup_tables(
    run_dir: Path,
    cfg: dict[str, Any],
    main: pd.DataFrame,
    classes: list[str],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
    """Scores and tests of every reported cell (also written as CSV), and notes; None when
    ``report.subgroups`` is empty.

    Args:
        params: ``n_boot``, ``alpha`` and ``seed`` of the bootstrap and the permutations.
    """
    rc = ReportConfig.model_validate(cfg.get("report") or {})
    if not rc.subgroups:
        return None
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    have = list(manifest.columns)
    notes = [
        f"column {c!r} is not in the manifest (its columns: {', '.join(have)})"
        for c in rc.subgroups
        if c not in have
    ]
    notes += [n for n in [_stale_extra_metadata(run_dir, cfg)] if n]
    for note in notes:
        log.warning("report.subgroups: %s", note)
    values = patch_values(run_dir, manifest, [c for c in rc.subgroups if c in have])
    encoders = [str(e["name"]) for e in (cfg.get("features") or {}).get("encoders", [])]
    cells = subgroup_cells(main, encoders) if len(values.columns) else []
    parts = [cell_subgroups(run_dir, c, values, rc, classes, params) for c in cells]
    if not parts:
        return pd.DataFrame(columns=CELL_COLUMNS), pd.DataFrame(columns=CELL_COLUMNS), notes
    scores = pd.concat([s for s, _ in parts], ignore_index=True)
    tests = pd.concat([t for _, t in parts], ignore_index=True)
    scores = scores[CELL_COLUMNS + [c for c in scores.columns if c not in CELL_COLUMNS]]
    tests = tests[CELL_COLUMNS + [c for c in tests.columns if c not in CELL_COLUMNS]]
    write_text(scores.to_csv(index=False), run_dir / REPORT_DIR / SCORES_CSV)
    write_text(tests.to_csv(index=False), run_dir / REPORT_DIR / TESTS_CSV)
    return scores, tests, notes


def _metric_labels(classes: list[str]) -> dict[str, str]:
    return (
        {"balanced_accuracy": "balanced accuracy"}
        | {f"recall_{c}": f"recall {c}" for c in classes}
        | {"auc_macro": "macro AUC"}
    )


def subgroup_context(
    scores: pd.DataFrame, tests: pd.DataFrame, notes: list[str], classes: list[str]
) -> dict[str, Any]:
    """What the Subgroups section shows: per column, a table of cells x groups and the tests."""
    labels = _metric_labels(classes)
    columns = []
    for column, g in scores.groupby("column", sort=False):
        rows = []
        for r in g.to_dict("records"):
            values = [
                {"value": fmt(r[m]), "ci": f"[{fmt(r[f'{m}_low'])}, {fmt(r[f'{m}_high'])}]"}
                for m in labels
            ]
            cell = "/".join(str(r[k]) for k in CELL_COLUMNS)
            keys = ("group", "n_patches", "n_patients", "note")
            rows.append({"cell": cell, "values": values} | {k: r[k] for k in keys})
        t = tests[tests["column"] == column]
        test_rows = [
            {"cell": "/".join(str(r[k]) for k in CELL_COLUMNS), "metric": labels[r["metric"]]}
            | {"statistic": fmt(r["statistic"]), "p": fmt_p(r["p_value"])}
            | {k: int(r[k]) for k in ("n_valid", "n_groups", "n_permuted", "n_fixed")}
            for r in t.to_dict("records")
        ]
        grouping = str(g["grouping"].iloc[0])
        columns.append({"name": column, "grouping": grouping, "rows": rows, "tests": test_rows})
    return {
        "metrics": list(labels.values()),
        "tested": [labels[m] for m in TESTED],
        "missing": MISSING,
        "columns": columns,
        "notes": notes,
        "csv": [SCORES_CSV, TESTS_CSV],
    }
