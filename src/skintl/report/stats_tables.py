"""Report tables from the predictions of every cell (pure: tables in, tables out).

A *cell* is one (encoder, layer, classifier) of the study; a baseline cell has encoder
``"baseline"`` and layer ``"-"`` (no feature matrix). Per cell: per-patient and per-fold scores
and patient-bootstrap CIs (:func:`cell_summary`, JSON-able so that it can be cached). Across
cells: the main table, the Friedman test with Holm-Wilcoxon post-hoc tests over folds, and the
layer effect per encoder (:func:`assemble`). The statistics are those of
:mod:`skintl.evaluation.stats`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from skintl.evaluation.stats import (
    PROB_PREFIX,
    FriedmanResult,
    balanced_accuracy,
    bootstrap_ci,
    friedman_posthoc,
    layer_effect,
    macro_auc,
)

log = logging.getLogger(__name__)

NO_LAYER = "-"  # layer of a cell without features (a baseline on raw patches)
#: metrics with a bootstrap CI in the main table: column name -> label in the report
CI_METRICS = {
    "balanced_accuracy": "balanced accuracy",
    "auc_macro": "macro AUC",
    "macro_f1": "macro F1",
}


def slug(text: str) -> str:
    """``text`` as a safe file-name stem (characters other than ``A-Za-z0-9_.-`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


@dataclass(frozen=True)
class Cell:
    """One evaluated configuration; ``name`` is ``encoder/layer/classifier``."""

    encoder: str
    layer: str
    classifier: str

    @property
    def name(self) -> str:
        return f"{self.encoder}/{self.layer}/{self.classifier}"

    @property
    def slug(self) -> str:
        """The name as a file-name stem: ``encoder__layer__classifier``."""
        return slug(f"{self.encoder}__{self.layer}__{self.classifier}")


class MacroF1:
    """Macro-averaged F1 over the ``prob_<class>`` classes (sklearn, ``zero_division=0``).

    A :class:`~skintl.evaluation.stats.WeightedMetric`: ``weighted(df)(w)`` scores the table
    with row ``i`` repeated ``w[i]`` times, so that :func:`bootstrap_ci` does not copy tables.
    """

    def __call__(self, df: pd.DataFrame) -> float:
        return self.weighted(df)(np.ones(len(df)))

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        labels = [str(c)[len(PROB_PREFIX) :] for c in df.columns if str(c).startswith(PROB_PREFIX)]
        extra = set(df["y_true"]) | set(df["y_pred"])
        labels += sorted(str(c) for c in extra - set(labels))
        code = {c: i for i, c in enumerate(labels)}
        k = len(labels)
        cell = df["y_true"].map(code).to_numpy() * k + df["y_pred"].map(code).to_numpy()

        def score(w: np.ndarray) -> float:
            cm = np.bincount(cell, weights=w, minlength=k * k).reshape(k, k)
            tp = np.diag(cm)
            denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2 TP + FP + FN
            f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
            return float(f1.mean())

        return score


macro_f1 = MacroF1()
_METRIC_FNS: dict[str, Callable[[pd.DataFrame], float]] = {
    "balanced_accuracy": balanced_accuracy,
    "auc_macro": macro_auc,
    "macro_f1": macro_f1,
}


def per_group_scores(pred: pd.DataFrame, by: str) -> pd.DataFrame:
    """Accuracy and balanced accuracy of the predictions of each ``by`` value.

    Args:
        pred: one row per patch with ``by``, ``fold``, ``patient_id``, ``y_true``, ``y_pred``.
        by: ``"patient_id"`` or ``"fold"``.

    Returns:
        One row per group: ``by``, (``fold`` for patients), n, n_classes (classes present in
        ``y_true``; balanced accuracy averages recall over these), accuracy, balanced_accuracy.
    """
    rows = []
    for key, g in pred.groupby(by, sort=True):
        row: dict[str, Any] = {by: key.item() if isinstance(key, np.generic) else key}
        if by != "fold":
            row["fold"] = int(g["fold"].iloc[0])
        else:
            row["n_patients"] = int(g["patient_id"].nunique())
        row |= {"n": len(g), "n_classes": int(g["y_true"].nunique())}
        row["accuracy"] = float((g["y_true"] == g["y_pred"]).mean())
        row["balanced_accuracy"] = balanced_accuracy(g)
        rows.append(row)
    return pd.DataFrame(rows)


def cell_summary(
    pred: pd.DataFrame, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """Everything the report needs from one cell's predictions, as plain JSON-able values.

    Returns:
        ``{"per_patient": table, "per_fold": table, "ci": {...}}``: the tables of
        :func:`per_group_scores` and, for each of :data:`CI_METRICS`, the pooled value with
        ``<metric>_low`` / ``<metric>_high`` from :func:`bootstrap_ci` over patients.
    """
    ci: dict[str, Any] = {"n": len(pred), "n_patients": int(pred["patient_id"].nunique())}
    ci["n_folds"] = int(pred["fold"].nunique())
    for name, fn in _METRIC_FNS.items():
        est, low, high = bootstrap_ci(pred, fn, n_boot=n_boot, alpha=alpha, seed=seed)
        ci |= {name: est, f"{name}_low": low, f"{name}_high": high}
    return {
        "per_patient": _to_json(per_group_scores(pred, "patient_id")),
        "per_fold": _to_json(per_group_scores(pred, "fold")),
        "ci": ci,
    }


def _to_json(df: pd.DataFrame) -> dict[str, Any]:
    """A table as ``{"columns": [...], "data": [[...]]}``: keeps the column order in JSON."""
    split = df.to_dict("split")
    return {"columns": split["columns"], "data": split["data"]}


def _from_json(d: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(d["data"], columns=d["columns"])


def long_table(summaries: Mapping[Cell, Mapping[str, Any]], part: str) -> pd.DataFrame:
    frames = []
    for cell, s in summaries.items():
        df = _from_json(s[part])
        df.insert(0, "encoder", cell.encoder)
        df.insert(1, "layer", cell.layer)
        df.insert(2, "classifier", cell.classifier)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def main_table(summaries: Mapping[Cell, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per cell: encoder, layer, classifier, n, n_patients, n_folds, metric + CI."""
    rows = []
    for c, s in summaries.items():
        rows.append({"encoder": c.encoder, "layer": c.layer, "classifier": c.classifier} | s["ci"])
    cols = ["encoder", "layer", "classifier", "n", "n_patients", "n_folds"]
    cols += [f"{m}{end}" for m in CI_METRICS for end in ("", "_low", "_high")]
    return pd.DataFrame(rows, columns=cols)


def fold_matrix(per_fold: pd.DataFrame, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """``(folds, cells)`` table of ``metric`` per fold, columns named ``encoder/layer/clf``."""
    names = per_fold["encoder"] + "/" + per_fold["layer"] + "/" + per_fold["classifier"]
    table = per_fold.assign(cell=names).pivot(index="fold", columns="cell", values=metric)
    return table[list(dict.fromkeys(names))]


def compare_cells(scores: pd.DataFrame, alpha: float = 0.05) -> tuple[FriedmanResult | None, str]:
    """Friedman + Holm-Wilcoxon across all cells with folds as blocks.

    Returns:
        ``(result, note)``; ``result`` is None with the reason in ``note`` when the test cannot
        run (fewer than 3 cells or 2 complete folds, all ties).
    """
    complete = scores.dropna()
    note = ""
    if len(complete) < len(scores):
        note = f"{len(scores) - len(complete)} folds without a score for every cell were dropped. "
    try:
        return friedman_posthoc(complete, alpha=alpha), note
    except ValueError as e:
        return None, note + f"No Friedman test: {e}."


def ranks_table(result: FriedmanResult) -> pd.DataFrame:
    """Configurations by mean rank (best first): rank, configuration, mean_rank, median."""
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(result.mean_ranks) + 1),
            "configuration": result.mean_ranks.index,
            "mean_rank": result.mean_ranks.to_numpy(),
            "median": result.medians.to_numpy(),
        }
    )


def friedman_overview(result: FriedmanResult) -> pd.DataFrame:
    """One row: statistic, p, n_configurations, n_blocks, alpha, critical_difference, n_sig."""
    return pd.DataFrame(
        [
            {
                "statistic": result.statistic,
                "p": result.p_value,
                "n_configurations": len(result.mean_ranks),
                "n_blocks": result.n_blocks,
                "alpha": result.alpha,
                "critical_difference": result.critical_difference,
                "n_significant_pairs": int(result.pairwise["significant"].sum()),
            }
        ]
    )


def layer_effects(per_fold: pd.DataFrame, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """:func:`~skintl.evaluation.stats.layer_effect` per classifier, over folds.

    Only encoders with 2 or more layers take part (not baselines on raw patches, not single
    hand-crafted descriptors). ``mean_ranks`` becomes a ``layer: rank; ...`` string; a
    classifier whose test cannot run gets rows with the reason in ``note``.
    """
    feats = per_fold[per_fold["layer"] != NO_LAYER]
    n_layers = feats.groupby(["classifier", "encoder"])["layer"].transform("nunique")
    feats = feats[n_layers >= 2]
    out = []
    for clf, sub in feats.groupby("classifier", sort=False):
        try:
            eff = layer_effect(sub, metric=metric, block_col="fold")
            eff["note"] = ""
        except ValueError as e:
            eff = pd.DataFrame({"encoder": sub["encoder"].unique(), "note": str(e)})
        eff.insert(0, "classifier", clf)
        out.append(eff)
    if not out:
        return pd.DataFrame(columns=["classifier", "encoder", "best_layer", "note"])
    table = pd.concat(out, ignore_index=True)
    if "mean_ranks" in table:
        table["mean_ranks"] = [
            "; ".join(f"{k}: {v:.2f}" for k, v in r.items()) if isinstance(r, dict) else ""
            for r in table["mean_ranks"]
        ]
    return table


def best_cells(main: pd.DataFrame, metric: str = "balanced_accuracy") -> dict[str, Cell]:
    """The cell with the highest pooled ``metric`` of each encoder (in table order)."""
    best: dict[str, Cell] = {}
    for enc, g in main.groupby("encoder", sort=False):
        r = g.iloc[int(np.argmax(g[metric].fillna(-np.inf).to_numpy()))]
        best[str(enc)] = Cell(str(r["encoder"]), str(r["layer"]), str(r["classifier"]))
    return best


@dataclass(frozen=True)
class StatsTables:
    """All report tables; ``friedman`` is None (reason in ``friedman_note``) when not testable."""

    main: pd.DataFrame
    per_patient: pd.DataFrame
    per_fold: pd.DataFrame
    fold_scores: pd.DataFrame
    friedman: FriedmanResult | None
    friedman_note: str
    layer_effect: pd.DataFrame

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """File name -> table, as written into ``<run>/report/``."""
        out = {
            "main_table.csv": self.main,
            "per_patient.csv": self.per_patient,
            "per_fold.csv": self.per_fold,
            "layer_effect.csv": self.layer_effect,
        }
        if self.friedman is not None:
            out["friedman.csv"] = friedman_overview(self.friedman)
            out["friedman_ranks.csv"] = ranks_table(self.friedman)
            out["friedman_pairwise.csv"] = self.friedman.pairwise
        return out


def friedman_to_dict(result: FriedmanResult) -> dict[str, Any]:
    """A JSON-able copy of a :class:`FriedmanResult` (inverse: :func:`friedman_from_dict`)."""
    return {
        "statistic": result.statistic,
        "p_value": result.p_value,
        "mean_ranks": [[str(k), float(v)] for k, v in result.mean_ranks.items()],
        "medians": [[str(k), float(v)] for k, v in result.medians.items()],
        "pairwise": _to_json(result.pairwise),
        "n_blocks": result.n_blocks,
        "alpha": result.alpha,
        "critical_difference": result.critical_difference,
    }


def friedman_from_dict(d: Mapping[str, Any]) -> FriedmanResult:
    """Rebuild a :class:`FriedmanResult` from :func:`friedman_to_dict`."""

    def series(pairs: list[list[Any]]) -> pd.Series:
        return pd.Series([v for _, v in pairs], index=[k for k, _ in pairs], dtype=float)

    pairwise = _from_json(d["pairwise"])
    pairwise["significant"] = pairwise["significant"].astype(bool)
    return FriedmanResult(
        float(d["statistic"]),
        float(d["p_value"]),
        series(d["mean_ranks"]),
        series(d["medians"]),
        pairwise,
        int(d["n_blocks"]),
        float(d["alpha"]),
        float(d["critical_difference"]),
    )


def statistical_tests(per_fold: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Friedman across cells and layer effect per encoder, as JSON-able values (cacheable).

    Returns:
        ``{"friedman": friedman_to_dict(...) or None, "note": str, "layer_effect": table}``.
    """
    result, note = compare_cells(fold_matrix(per_fold), alpha)
    return {
        "friedman": None if result is None else friedman_to_dict(result),
        "note": note,
        "layer_effect": _to_json(layer_effects(per_fold)),
    }


def assemble(
    summaries: Mapping[Cell, Mapping[str, Any]],
    alpha: float = 0.05,
    tests: Mapping[str, Any] | None = None,
) -> StatsTables:
    """Build every cross-cell table from the per-cell summaries of :func:`cell_summary`.

    Args:
        tests: the output of :func:`statistical_tests` on these summaries' per-fold table
            (e.g. from a cache); computed when None.
    """
    if not summaries:
        raise ValueError("no cells to report")
    per_fold = long_table(summaries, "per_fold")
    if tests is None:
        tests = statistical_tests(per_fold, alpha)
    result = None if tests["friedman"] is None else friedman_from_dict(tests["friedman"])
    return StatsTables(
        main=main_table(summaries),
        per_patient=long_table(summaries, "per_patient"),
        per_fold=per_fold,
        fold_scores=fold_matrix(per_fold),
        friedman=result,
        friedman_note=str(tests["note"]),
        layer_effect=_from_json(tests["layer_effect"]),
    )
