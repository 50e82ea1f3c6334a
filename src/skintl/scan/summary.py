"""Whole-photo results over photos: means and medians per mode, and paired differences.

Each metric is summarised over photos by its mean and its median, each with a patient-bootstrap
95% CI. Region precision is pooled instead of averaged: true-positive regions over predicted
regions of every photo, so a photo with many false regions weighs by its regions and no photo
drops out (averaging per-photo precision skipped the photos without a prediction); its median
is over the photos with a predicted region. ``flooded`` is 0/1 per photo, so its mean is the
share of photos with a flood.

Every mode scans the same photos, so modes are compared photo by photo. For each metric the
difference is ``mode - reference`` on every photo both scanned; its mean gets a patient-bootstrap
CI that keeps the pairs (a drawn patient brings each of their photos, scanned in both modes),
and a two-sided Wilcoxon signed-rank test runs over patients (each patient's mean difference),
the independent unit the bootstrap resamples too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: metrics summarised over photos (mean, median, patient-bootstrap CIs)
SUMMARY_METRICS = (
    "dice", "iou", "region_sensitivity", "region_sensitivity_any", "region_specificity",
    "region_precision", "flooded", "burden_error_pct", "burden_abs_error_pct",
    "pred_burden_pct", "doctor_burden_pct", "doctor_off_skin_pct",
)  # fmt: skip
#: metrics whose mean pools counts over every photo: metric -> (numerator, denominator)
POOLED = {"region_precision": ("pred_regions_tp", "pred_regions")}
#: metrics compared between modes (the doctor's values are the same in every mode)
DIFFERENCE_METRICS = tuple(
    m for m in SUMMARY_METRICS if m not in ("doctor_burden_pct", "doctor_off_skin_pct")
)
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


class Median:
    """Median of one column; over a row-weighted copy, the median of the rows repeated."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, df: pd.DataFrame) -> float:
        return float(df[self.column].median())

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        x = df[self.column].to_numpy(dtype=float)
        order = np.argsort(x, kind="stable")
        xs = x[order]

        def score(w: np.ndarray) -> float:
            cw = np.cumsum(w[order])  # rank r (0-based) is xs[first index with cw > r]
            n = round(float(cw[-1]))
            lo, hi = np.searchsorted(cw, [(n - 1) // 2, n // 2], side="right")
            return float((xs[lo] + xs[hi]) / 2)

        return score


class Pooled:
    """Sum of one column over the sum of another (e.g. true-positive over predicted regions)."""

    def __init__(self, numerator: str, denominator: str) -> None:
        self.numerator, self.denominator = numerator, denominator

    def __call__(self, df: pd.DataFrame) -> float:
        return self.weighted(df)(np.ones(len(df)))

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        a = df[self.numerator].to_numpy(dtype=float)
        b = df[self.denominator].to_numpy(dtype=float)
        return lambda w: float(w @ a / d) if (d := w @ b) else math.nan


def metric_ci(d: pd.DataFrame, metric: Any, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(estimate, low, high) of ``metric`` on the rows, 95% CI by resampling ``patient_id``.

    With fewer than two patients there is no interval: low and high are NaN.
    """
    from skintl.evaluation.stats import bootstrap_ci

    if len(d) and d["patient_id"].nunique() >= 2:
        try:
            return bootstrap_ci(d, metric, n_boot=n_boot, seed=seed)
        except ValueError:  # undefined on every resample (e.g. no predicted region at all)
            pass
    return float(metric(d)) if len(d) else math.nan, math.nan, math.nan


def mean_ci(d: pd.DataFrame, column: str, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(mean, low, high) of ``column`` over rows, 95% CI by resampling ``patient_id``."""
    return metric_ci(d, Mean(column), n_boot, seed)


def summarise(table: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean and median of every metric over photos per (mode, target class), with
    patient-bootstrap CIs (region precision's mean pooled over every photo: module docstring).

    Args:
        table: one row per (photo, mode): ``mode``, ``target_class``, ``patient_id``, metrics.

    Returns:
        One row per (mode, target class, metric): ``n_photos``, ``mean``, ``ci_low``,
        ``ci_high``, ``median``, ``median_ci_low``, ``median_ci_high``.
    """
    rows = []
    for (mode, target), g in table.groupby(["mode", "target_class"]):
        for metric in (m for m in SUMMARY_METRICS if m in g):
            d = g[["patient_id", metric]].dropna()
            pooled = POOLED.get(metric)
            if pooled is not None and set(pooled) <= set(g):
                every = g[["patient_id", *pooled]].dropna()
                (est, lo, hi), n = metric_ci(every, Pooled(*pooled), n_boot, seed), len(every)
            else:
                (est, lo, hi), n = mean_ci(d, metric, n_boot, seed), len(d)
            med, mlo, mhi = metric_ci(d, Median(metric), n_boot, seed)
            rows.append({"mode": mode, "target_class": target, "metric": metric,
                         "n_photos": n, "mean": est, "ci_low": lo, "ci_high": hi,
                         "median": med, "median_ci_low": mlo,
                         "median_ci_high": mhi})  # fmt: skip
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


def gallery(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The best, median and worst photo by Dice of every (mode, target class).

    Returns:
        One dict per pick, sorted by mode, class and Dice (best first): ``mode``,
        ``target_class``, ``rank`` (best / median / worst), ``photo``, ``stem``, ``dice``,
        ``flooded``; a class with fewer than three photos gives fewer picks.
    """
    if "dice" not in table:
        return []
    out = []
    for (mode, target), g in table.dropna(subset=["dice"]).groupby(["mode", "target_class"]):
        g = g.sort_values("dice", ascending=False, kind="stable").reset_index(drop=True)
        picks = dict.fromkeys([0, len(g) // 2, len(g) - 1])  # the same photo once
        names = ["best", "median", "worst"] if len(picks) == 3 else ["best", "worst"][: len(picks)]
        for name, i in zip(names, picks, strict=True):
            r = g.iloc[i]
            out.append({"mode": mode, "target_class": target, "rank": name,
                        "photo": str(r["photo"]), "stem": Path(str(r["photo"])).stem,
                        "dice": float(r["dice"]),
                        "flooded": bool(r.get("flooded", 0))})  # fmt: skip
    return out
