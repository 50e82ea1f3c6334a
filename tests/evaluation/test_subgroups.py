"""Subgroup metrics, patient-bootstrap CIs, the patient-level permutation test and binning."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from skintl.evaluation.subgroups import (
    MISSING,
    OUT_OF_RANGE,
    assign_bins,
    group_scores,
    permutation_test,
    subgroup_analysis,
    subgroup_labels,
    subgroup_metrics,
)

CLASSES = ["AK", "healthy", "SK"]


def toy_predictions(
    rng: np.random.Generator, n_patients: int = 12, per_patient: int = 9, skill: float = 0.6
) -> pd.DataFrame:
    """Patients with every class; each patient's own accuracy, so patches are correlated."""
    n = n_patients * per_patient
    patient = np.repeat([f"P{i:02d}" for i in range(n_patients)], per_patient)
    y_true = np.tile(np.resize(CLASSES, per_patient), n_patients)
    own = np.repeat(rng.uniform(skill - 0.3, skill + 0.3, n_patients), per_patient)
    right = rng.random(n) < own
    y_pred = np.where(right, y_true, rng.choice(CLASSES, n))
    logits = rng.normal(size=(n, 3)) + 2.0 * (np.asarray(CLASSES) == y_pred[:, None])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    df = pd.DataFrame({"patient_id": patient, "y_true": y_true, "y_pred": y_pred})
    return df.assign(**{f"prob_{c}": proba[:, k] for k, c in enumerate(CLASSES)})


def test_group_metrics_equal_sklearn() -> None:
    pred = toy_predictions(np.random.default_rng(0))
    row = group_scores(pred, subgroup_metrics(CLASSES), n_boot=20)
    y, p = pred["y_true"], pred["y_pred"]
    ordered = sorted(CLASSES)  # sklearn's multi-class AUC wants sorted labels
    proba = pred[[f"prob_{c}" for c in ordered]].to_numpy()
    assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    recalls = recall_score(y, p, labels=CLASSES, average=None)
    assert [row[f"recall_{c}"] for c in CLASSES] == pytest.approx(recalls)
    auc = roc_auc_score(y, proba, multi_class="ovr", labels=ordered, average="macro")
    assert row["auc_macro"] == pytest.approx(auc)
    assert (row["n_patches"], row["n_patients"], row["note"]) == (len(pred), 12, "")


def test_a_class_absent_from_a_group_gives_nan_with_a_note() -> None:
    pred = toy_predictions(np.random.default_rng(1))
    pred = pred[pred["y_true"] != "SK"]
    row = group_scores(pred, subgroup_metrics(CLASSES), n_boot=20)
    for m in ("balanced_accuracy", "recall_SK", "auc_macro"):
        assert math.isnan(row[m]) and math.isnan(row[f"{m}_low"])
    assert "balanced_accuracy, recall_SK, auc_macro" in str(row["note"])
    recalls = recall_score(pred["y_true"], pred["y_pred"], labels=["AK", "healthy"], average=None)
    assert [row["recall_AK"], row["recall_healthy"]] == pytest.approx(recalls)


def test_one_patient_has_no_ci() -> None:
    pred = toy_predictions(np.random.default_rng(2))
    row = group_scores(pred[pred["patient_id"] == "P00"], subgroup_metrics(CLASSES), n_boot=20)
    assert not math.isnan(row["recall_AK"]) and math.isnan(row["recall_AK_low"])
    assert "one patient" in str(row["note"])


def test_bootstrap_ci_contains_the_estimate_and_is_seeded() -> None:
    pred = toy_predictions(np.random.default_rng(3), n_patients=20)
    metrics = subgroup_metrics(CLASSES)
    a = group_scores(pred, metrics, n_boot=200, seed=5)
    for m in metrics:
        assert a[f"{m}_low"] <= a[m] <= a[f"{m}_high"]
        assert a[f"{m}_low"] < a[f"{m}_high"]
    assert group_scores(pred, metrics, n_boot=200, seed=5) == a
    assert group_scores(pred, metrics, n_boot=200, seed=6) != a


def _random_groups(pred: pd.DataFrame, rng: np.random.Generator, k: int = 2) -> pd.Series:
    patients = pred["patient_id"].unique()
    group = dict(
        zip(
            patients,
            rng.permutation(np.resize([f"g{i}" for i in range(k)], len(patients))),
            strict=True,
        )
    )
    return pred["patient_id"].map(group)


@pytest.mark.parametrize("metric", ["balanced_accuracy", "auc_macro"])
def test_null_p_values_are_uniform(metric: str) -> None:
    # groups drawn at random for patients: no real difference. 30 patches per patient keep
    # ties between permutations rare (ties make a permutation test conservative)
    rng = np.random.default_rng(4)
    score = subgroup_metrics(CLASSES)[metric]
    p = np.array(
        [
            permutation_test(pred, _random_groups(pred, rng), score, n_perm=39, seed=s).p_value
            for s, pred in enumerate(toy_predictions(rng, 10, 30) for _ in range(300))
        ]
    )
    below = int((p <= 0.05).sum())
    assert stats.binomtest(below, len(p), 0.05).pvalue > 0.001, below
    assert stats.binomtest(int((p <= 0.5).sum()), len(p), 0.5).pvalue > 0.001


def test_a_planted_difference_gives_a_small_p_value() -> None:
    rng = np.random.default_rng(5)
    pred = toy_predictions(rng, n_patients=16)
    groups = _random_groups(pred, rng)
    good = (groups == "g0").to_numpy()
    pred.loc[good, "y_pred"] = pred.loc[good, "y_true"]
    res = permutation_test(pred, groups, subgroup_metrics(CLASSES)["balanced_accuracy"], 199)
    assert res.p_value <= 0.01 and res.statistic > 0.2
    assert (res.n_groups, res.n_permuted, res.n_fixed, res.n_valid) == (2, 16, 0, 199)


def test_mixed_patients_stay_fixed_and_the_statistic_is_the_tables_spread() -> None:
    rng = np.random.default_rng(6)
    pred = toy_predictions(rng, n_patients=10)
    groups = _random_groups(pred, rng, k=3)
    first = (pred["patient_id"] == "P00").to_numpy()
    groups[np.flatnonzero(first)[:3]] = "g2" if groups[first].iloc[0] != "g2" else "g1"
    groups[np.flatnonzero(first)[3]] = MISSING  # left out of the test
    labels = subgroup_labels(groups, pred["patient_id"])
    scores, tests = subgroup_analysis(pred, {"g": labels}, CLASSES, n_boot=10, n_perm=30)
    assert scores["group"].tolist() == ["g0", "g1", "g2", MISSING]
    ba = tests.set_index("metric").loc["balanced_accuracy"]
    tested = scores[scores["group"] != MISSING]["balanced_accuracy"]
    assert ba["statistic"] == pytest.approx(tested.max() - tested.min())
    assert (ba["n_groups"], ba["n_permuted"], ba["n_fixed"]) == (3, 9, 1)
    assert 1 / 31 <= ba["p_value"] <= 1


def test_numeric_values_fall_in_the_stated_bins() -> None:
    values = np.array([0, 49.9, 50, 64.9, 65, 120, 121, -1, np.nan])
    got = assign_bins(values, [0, 50, 65, 120])
    low, mid, high = "[0, 50)", "[50, 65)", "[65, 120]"
    assert got.tolist() == [low, low, mid, mid, high, high, OUT_OF_RANGE, OUT_OF_RANGE, MISSING]


def test_default_bins_are_terciles_of_patient_medians() -> None:
    # P0 has many photos at 10: per patient it counts once
    patient = pd.Series(["P0"] * 20 + [f"P{i}" for i in range(1, 11)])
    age = pd.Series([10.0] * 20 + [20, 30, 40, 50, 60, 70, 80, 90, 100, 0]).astype(str)
    age[1] = "5"  # P0's median stays 10; the outer edges take every row's value
    g = subgroup_labels(age.where(patient != "P10", ""), patient)
    assert g.order == ["[5, 40)", "[40, 70)", "[70, 100]", MISSING]
    assert "terciles" in g.description and "[5, 40), [40, 70), [70, 100]" in g.description
    assert g.labels[:3].tolist() == ["[5, 40)"] * 3 and g.labels.iloc[-1] == MISSING


def test_default_inner_edges_are_rounded_as_stated() -> None:
    patient = pd.Series(["a", "b", "c", "d"])
    g = subgroup_labels(pd.Series([0.0, 0.1, 0.2, 0.3]), patient)  # few levels: categories
    assert g.description == "values as they are"
    values = pd.Series(np.linspace(0, 1, 10))
    g = subgroup_labels(values, pd.Series(np.arange(10).astype(str)))
    assert g.order == ["[0, 0.333)", "[0.333, 0.667)", "[0.667, 1]"]
    assert g.labels.tolist() == ["[0, 0.333)"] * 3 + ["[0.333, 0.667)"] * 4 + ["[0.667, 1]"] * 3


def test_configured_bins_and_categories() -> None:
    patient = pd.Series(["a", "b", "c", "d"])
    g = subgroup_labels(pd.Series(["10", "60", "", "99"]), patient, edges=[0, 50, 100])
    assert g.labels.tolist() == ["[0, 50)", "[50, 100]", MISSING, "[50, 100]"]
    assert g.description == "bins as configured: [0, 50), [50, 100]"
    skin = subgroup_labels(pd.Series(["2.0", "10.0", "", "1.0"]), patient)  # few levels
    assert skin.order == ["1.0", "2.0", "10.0", MISSING]
    ink = subgroup_labels(pd.Series([True, False, True, False]), patient)
    assert ink.order == ["False", "True"]
    with pytest.raises(ValueError, match="not all numbers"):
        subgroup_labels(pd.Series(["FACE", "ARM", "", "ARM"]), patient, edges=[0, 1])
