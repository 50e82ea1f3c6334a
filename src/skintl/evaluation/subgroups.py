"""Does a model work equally well across subgroups of photos (ink, skin type, region, age)?

Pure computation on one cell's out-of-fold predictions: tables in, tables out.

- **Groups** come from a photo-level column. Numeric columns are cut into stated bins (given
  edges, or terciles of the patient-level medians); a missing value (NaN or an empty cell) is a
  group of its own, ``"missing"``, shown in the tables and left out of the tests.
- **Metrics** per group: balanced accuracy, per-class recall and one-vs-rest macro AUC, with
  percentile CIs from a bootstrap of the group's patients
  (:func:`skintl.evaluation.stats.group_resamples`). A metric averaged over classes is NaN when
  a class has no patch in the group: its chance level would differ from the other groups'.
- **Test** per column and metric: patient-level permutation of the group labels; the statistic
  is the largest minus the smallest group metric, ``p = (1 + #{perm >= observed}) / (1 + n)``.
  Each patient keeps its patches; a patient whose photos fall into several groups keeps its
  observed labels in every permutation (the test conditions on them), so the observed
  statistic is the one the table shows.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from skintl.evaluation.stats import (
    WeightedMetric,
    balanced_accuracy,
    group_resamples,
    macro_auc,
)

MISSING = "missing"
OUT_OF_RANGE = "out of range"
#: numeric columns with more distinct values than this are binned
MAX_LEVELS = 8
DEFAULT_BINS = 3
#: metrics tested for a difference between groups
TESTED = ("balanced_accuracy", "auc_macro")


@dataclass(frozen=True)
class Grouping:
    """The group of every row of a table, and how the groups were made."""

    labels: pd.Series  # (N,) group name of each row
    order: list[str]  # groups in table order (bins ascending, values sorted, missing last)
    description: str  # e.g. "binned at terciles of the patient-level medians: [50, 61)..."


def _missing(values: pd.Series) -> np.ndarray:
    return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()


def as_numbers(values: pd.Series) -> pd.Series | None:
    """The column as floats (NaN where missing) when every present value is a number, else None.

    Booleans (``True`` / ``False``, as a dtype or as text) are categories, not numbers.
    """
    if pd.api.types.is_bool_dtype(values):
        return None
    missing = _missing(values)
    numbers = pd.to_numeric(values.where(~missing), errors="coerce")
    if numbers[~missing].isna().any():
        return None
    return numbers.astype(float)


def default_edges(
    numbers: pd.Series, patient_id: pd.Series, n_bins: int = DEFAULT_BINS
) -> list[float]:
    """Bin edges at the quantiles (terciles by default) of the patients' median values.

    Per patient, so that a patient with many photos counts once. The inner edges are rounded to
    3 significant digits (the edges stated are the edges used); the outer ones are the smallest
    and largest value of any row, so every value falls in a bin. Equal edges are merged.
    """
    medians = numbers.groupby(patient_id.to_numpy()).median().dropna()
    inner = np.quantile(medians.to_numpy(), np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = [numbers.min(), *(float(f"{q:.3g}") for q in inner), numbers.max()]
    return [float(e) for e in np.unique(edges)]


def bin_names(edges: list[float]) -> list[str]:
    """``[a, b)`` for each bin, the last closed: ``[a, b]``."""
    last = len(edges) - 2
    return [
        f"[{a:g}, {b:g}{']' if i == last else ')'}"
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]


def assign_bins(numbers: np.ndarray, edges: list[float]) -> np.ndarray:
    """``(N,)`` bin name of each value; ``"missing"`` for NaN, ``"out of range"`` outside."""
    names = np.array([*bin_names(edges), OUT_OF_RANGE, MISSING], dtype=object)
    k = len(edges) - 1
    idx = np.searchsorted(edges, numbers, side="right") - 1
    idx[numbers == edges[-1]] = k - 1  # the last bin is closed
    idx[(idx < 0) | (idx >= k)] = k
    idx[np.isnan(numbers)] = k + 1
    return names[idx]


def _categories(values: pd.Series) -> Grouping:
    missing = _missing(values)
    labels = values.astype(str).str.strip().where(~missing, MISSING)
    present = sorted(set(labels[~missing]))
    numbers = pd.to_numeric(pd.Series(present), errors="coerce")
    if len(present) and not numbers.isna().any():  # numeric categories in numeric order
        present = [present[i] for i in np.argsort(numbers.to_numpy(), kind="stable")]
    order = present + ([MISSING] if missing.any() else [])
    return Grouping(labels.rename(None), order, "values as they are")


def subgroup_labels(
    values: pd.Series, patient_id: pd.Series, edges: list[float] | None = None
) -> Grouping:
    """Group the rows by a column's values, binning numeric columns.

    Args:
        values: ``(N,)`` the column, one value per row (photo-level values repeated per patch).
        patient_id: ``(N,)`` the patient of each row (for the default bins).
        edges: bin edges; None bins a numeric column with more than :data:`MAX_LEVELS` values at
            the terciles of its patient-level medians, and keeps other columns' values.
    """
    numbers = as_numbers(values)
    if numbers is None or (edges is None and numbers.nunique() <= MAX_LEVELS):
        if edges is not None:
            raise ValueError(f"bins given for {values.name!r}, whose values are not all numbers")
        return _categories(values)
    how = "bins as configured"
    if edges is None:
        edges = default_edges(numbers, patient_id)
        how = f"binned at the terciles of the {patient_id.nunique()} patients' median values"
        if len(edges) < 2:
            return _categories(values)
    labels = pd.Series(assign_bins(numbers.to_numpy(dtype=float), edges), index=values.index)
    present = set(labels)
    order = [b for b in [*bin_names(edges), OUT_OF_RANGE, MISSING] if b in present]
    return Grouping(labels, order, f"{how}: {', '.join(bin_names(edges))}")


class ClassRecall:
    """Recall (sensitivity) of one class: NaN when the class has no row."""

    def __init__(self, cls: str) -> None:
        self.cls = cls

    def __call__(self, df: pd.DataFrame) -> float:
        return self.weighted(df)(np.ones(len(df)))

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        pos = (df["y_true"] == self.cls).to_numpy(dtype=float)
        hit = pos * (df["y_pred"] == self.cls).to_numpy()

        def score(w: np.ndarray) -> float:
            n = float(w @ pos)
            return float(w @ hit) / n if n > 0 else math.nan

        return score


class AllClasses:
    """A class-averaged metric, NaN unless every class of the study has a row.

    Balanced accuracy over two of three classes has another chance level (1/2, not 1/3), so
    groups missing a class are not compared with the others.
    """

    def __init__(self, metric: WeightedMetric, classes: list[str]) -> None:
        self.metric, self.classes = metric, classes

    def __call__(self, df: pd.DataFrame) -> float:
        return self.weighted(df)(np.ones(len(df)))

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        inner = self.metric.weighted(df)
        onehot = (df["y_true"].to_numpy()[:, None] == np.asarray(self.classes)).astype(float)

        def score(w: np.ndarray) -> float:
            return inner(w) if (w @ onehot > 0).all() else math.nan

        return score


def subgroup_metrics(classes: list[str]) -> dict[str, WeightedMetric]:
    """Column name -> metric: balanced_accuracy, recall_<class>..., auc_macro (one-vs-rest)."""
    out: dict[str, WeightedMetric] = {"balanced_accuracy": AllClasses(balanced_accuracy, classes)}
    out |= {f"recall_{c}": ClassRecall(c) for c in classes}
    out["auc_macro"] = AllClasses(macro_auc, classes)
    return out


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise percentile interval of ``(n_boot, M)`` scores, ignoring NaN resamples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN
        low, high = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return low, high


def group_scores(
    pred: pd.DataFrame,
    metrics: Mapping[str, WeightedMetric],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, object]:
    """Point estimates and patient-bootstrap CIs of ``metrics`` on one group's predictions.

    Returns:
        ``n_patches``, ``n_patients``, ``<metric>``, ``<metric>_low``, ``<metric>_high`` per
        metric, and ``note`` (why a value or CI is missing, or rests on part of the resamples).
    """
    scorers = {name: m.weighted(pred) for name, m in metrics.items()}
    n_patients = int(pred["patient_id"].nunique())
    point = np.array([s(np.ones(len(pred))) for s in scorers.values()])
    notes = []
    absent = [m for m, v in zip(metrics, point, strict=True) if math.isnan(v)]
    if absent:
        notes.append(f"undefined (a class has no patch): {', '.join(absent)}")
    if n_patients >= 2:
        resamples = group_resamples(pred["patient_id"].to_numpy(), n_boot, seed)
        boot = np.array([[s(w) for s in scorers.values()] for w in resamples])
        low, high = _percentiles(boot, alpha)
        defined = (~np.isnan(boot)).sum(axis=0)
        for m, v, d in zip(metrics, point, defined, strict=True):
            if not math.isnan(v) and d < n_boot:
                notes.append(f"{m}: CI over the {d} of {n_boot} resamples where defined")
    else:
        low = high = np.full(len(point), math.nan)
        notes.append("one patient: no CI")
    row: dict[str, object] = {"n_patches": len(pred), "n_patients": n_patients}
    for m, v, lo, hi in zip(metrics, point, low, high, strict=True):
        defined = not math.isnan(v)
        row |= {
            m: v,
            f"{m}_low": lo if defined else math.nan,
            f"{m}_high": hi if defined else math.nan,
        }
    return row | {"note": "; ".join(notes)}


@dataclass(frozen=True)
class PermutationResult:
    """Patient-level permutation test of a metric's spread across groups."""

    statistic: float  # largest minus smallest group metric (NaN: fewer than 2 defined)
    p_value: float  # (1 + #{permuted >= observed}) / (1 + n_valid)
    n_valid: int  # permutations in which the statistic was defined
    n_groups: int  # groups tested (missing and out-of-range rows are left out)
    n_permuted: int  # patients whose label was permuted
    n_fixed: int  # patients with photos in several groups, kept at their observed labels


def _spread(score: Callable[[np.ndarray], float], codes: np.ndarray, n_groups: int) -> float:
    values = np.array([score((codes == g).astype(float)) for g in range(n_groups)])
    values = values[~np.isnan(values)]
    return float(values.max() - values.min()) if len(values) >= 2 else math.nan


def _patient_units(codes: np.ndarray, patient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: whether all its rows share one group, and that group (its first otherwise)."""
    per_patient = pd.Series(codes).groupby(patient).agg(["min", "max"])
    single = (per_patient["min"] == per_patient["max"]).to_numpy()
    return single, per_patient["min"].to_numpy()


def permutation_test(
    pred: pd.DataFrame,
    labels: pd.Series,
    metric: WeightedMetric,
    n_perm: int = 1000,
    seed: int = 0,
) -> PermutationResult:
    """Whether ``metric`` differs between groups: permute group labels across patients.

    Args:
        pred: one row per patch with ``patient_id`` and what ``metric`` reads.
        labels: ``(N,)`` group of each row; ``"missing"`` and ``"out of range"`` rows are left
            out. A patient whose rows are all in one group is permuted as a unit; a patient
            with rows in several groups keeps them (the test conditions on such patients).
        n_perm: permutations.
    """
    keep = ~labels.isin([MISSING, OUT_OF_RANGE]).to_numpy()
    pred = pred[keep]
    groups, codes = np.unique(labels[keep].to_numpy(dtype=str), return_inverse=True)
    patient = np.unique(pred["patient_id"].to_numpy(), return_inverse=True)[1]
    single, unit = _patient_units(codes, patient)
    k = len(groups)
    counts = {"n_groups": k, "n_permuted": int(single.sum()), "n_fixed": int((~single).sum())}
    score = metric.weighted(pred)
    observed = _spread(score, codes, k) if k >= 2 else math.nan
    if math.isnan(observed):
        return PermutationResult(math.nan, math.nan, 0, **counts)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_perm)
    for b in range(n_perm):
        shuffled = unit.copy()
        shuffled[single] = rng.permutation(unit[single])
        stats[b] = _spread(score, np.where(single[patient], shuffled[patient], codes), k)
    valid = stats[~np.isnan(stats)]
    p = (1 + int((valid >= observed - 1e-12).sum())) / (1 + len(valid))
    return PermutationResult(observed, p, len(valid), **counts)


def subgroup_analysis(
    pred: pd.DataFrame,
    groupings: Mapping[str, Grouping],
    classes: list[str],
    n_boot: int = 1000,
    n_perm: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics with CIs per group of every grouping, and a permutation test per column.

    Args:
        pred: one cell's predictions, one row per patch: ``patient_id``, ``y_true``,
            ``y_pred``, ``prob_<class>``...
        groupings: column name -> :class:`Grouping` of ``pred``'s rows (same order).
        classes: the study's classes.

    Returns:
        ``(scores, tests)``: one row per column and group (column, group, grouping, the
        columns of :func:`group_scores`), and one row per column and metric of :data:`TESTED`
        (column, metric and the fields of :class:`PermutationResult`).
    """
    metrics = subgroup_metrics(classes)
    rows, tests = [], []
    for column, grouping in groupings.items():
        head = {"column": column, "grouping": grouping.description}
        for group in grouping.order:
            sel = (grouping.labels == group).to_numpy()
            scores = group_scores(pred[sel], metrics, n_boot, alpha, seed)
            rows.append(head | {"group": group} | scores)
        for m in TESTED:
            res = permutation_test(pred, grouping.labels, metrics[m], n_perm, seed)
            tests.append({"column": column, "metric": m} | asdict(res))
    return pd.DataFrame(rows), pd.DataFrame(tests)
