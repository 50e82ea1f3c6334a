"""Whole-photo results over photos: means per mode, and paired differences between modes.

Every mode scans the same photos, so modes are compared photo by photo. For each metric the
difference is ``mode - reference`` on every photo both scanned; its mean gets a patient-bootstrap
CI that keeps the pairs (a drawn patient brings each of their photos, scanned in both modes),
and a two-sided Wilcoxon signed-rank test runs over patients (each patient's mean difference),
the independent unit the bootstrap resamples too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

#: metrics summarised over photos (mean, patient-bootstrap CI)
SUMMARY_METRICS = (
    "dice", "iou", "region_sensitivity", "region_specificity", "region_precision",
    "burden_error_pct", "burden_abs_error_pct", "pred_burden_pct", "doctor_burden_pct",
)  # fmt: skip
#: metrics compared between modes (the doctor's burden is the same in every mode)
DIFFERENCE_METRICS = tuple(m for m in SUMMARY_METRICS if m != "doctor_burden_pct")
#: the mode others are compared with, when it was scanned
REFERENCE_MODE = "exact"


class Mean:
    """Mean of one column, also over row-weighted copies (a :class:`WeightedMetric`)."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, df: pd.DataFrame) -> float:
        return float(df[self.column].mean())

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        x = df[self.column].to_numpy(dtype=float)  # (N,)
        return lambda w: float(w @ x / w.sum())


def mean_ci(d: pd.DataFrame, column: str, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(mean, low, high) of ``column`` over rows, 95% CI by resampling ``patient_id``.

    With fewer than two patients there is no interval: low and high are NaN.
    """
    from skintl.evaluation.stats import bootstrap_ci

    if d["patient_id"].nunique() >= 2:
        return bootstrap_ci(d, Mean(column), n_boot=n_boot, seed=seed)
    return float(d[column].mean()) if len(d) else math.nan, math.nan, math.nan


def summarise(table: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean of every metric over photos per (mode, target class), with patient-bootstrap CIs.

    Args:
        table: one row per (photo, mode): ``mode``, ``target_class``, ``patient_id``, metrics.
    """
    rows = []
    for (mode, target), g in table.groupby(["mode", "target_class"]):
        for metric in (m for m in SUMMARY_METRICS if m in g):
            d = g[["patient_id", metric]].dropna()
            est, lo, hi = mean_ci(d, metric, n_boot, seed)
            rows.append({"mode": mode, "target_class": target, "metric": metric,
                         "n_photos": len(d), "mean": est, "ci_low": lo, "ci_high": hi})  # fmt: skip
    return pd.DataFrame(rows)


def reference_mode(modes: list[str]) -> str:
    """Exact when it was scanned (it cuts windows as in training), else the first mode."""
    return REFERENCE_MODE if REFERENCE_MODE in modes else modes[0]


def paired(table: pd.DataFrame, metric: str, mode: str, reference: str) -> pd.DataFrame:
    """Photos scanned in both modes with the metric defined in both.

    Returns:
        One row per photo: ``patient_id``, ``photo``, ``diff`` (mode - reference).
    """
    wide = table.pivot_table(index=["patient_id", "photo"], columns="mode", values=metric,
                             aggfunc="first", dropna=False)  # fmt: skip
    if mode not in wide or reference not in wide:
        return pd.DataFrame(columns=["patient_id", "photo", "diff"])
    both = wide[[mode, reference]].dropna()
    return (both[mode] - both[reference]).rename("diff").reset_index()


def wilcoxon_p(per_patient: pd.Series) -> tuple[float, float]:
    """(statistic, two-sided p) of the signed-rank test of per-patient differences.

    No patient: (NaN, NaN); every difference zero: no evidence of a difference (NaN, 1.0).
    """
    from skintl.evaluation.stats import paired_test

    x = per_patient.to_numpy(dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    if np.all(x == 0):
        return math.nan, 1.0
    res = paired_test(x, np.zeros_like(x))
    return res.statistic, res.p_value


def paired_differences(table: pd.DataFrame, reference: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean per-photo difference of every other mode minus ``reference``, per target class.

    Args:
        table: as for :func:`summarise`, plus ``photo`` (the same path in every mode).

    Returns:
        One row per (target class, metric, mode): ``n_photos``, ``n_patients``,
        ``mean_difference`` with its patient-bootstrap ``ci_low`` / ``ci_high`` (pairs kept),
        ``wilcoxon_statistic`` and ``p_value`` (over patients).
    """
    rows = []
    others = [m for m in dict.fromkeys(table["mode"]) if m != reference]
    for target, g in table.groupby("target_class"):
        for metric in (m for m in DIFFERENCE_METRICS if m in g):
            for mode in others:
                d = paired(g, metric, mode, reference)
                est, lo, hi = mean_ci(d, "diff", n_boot, seed)
                stat, p = wilcoxon_p(d.groupby("patient_id")["diff"].mean())
                rows.append({"target_class": target, "metric": metric, "mode": mode,
                             "reference": reference, "n_photos": len(d),
                             "n_patients": d["patient_id"].nunique(), "mean_difference": est,
                             "ci_low": lo, "ci_high": hi, "wilcoxon_statistic": stat,
                             "p_value": p})  # fmt: skip
    return pd.DataFrame(rows)
