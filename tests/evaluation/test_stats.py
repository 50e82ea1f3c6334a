"""Tests for patient-bootstrap CIs, Friedman + Holm-Wilcoxon, paired tests and CD plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from skintl.evaluation.stats import (
    _cliques,
    balanced_accuracy,
    bootstrap_ci,
    friedman_posthoc,
    layer_effect,
    macro_auc,
    nemenyi_cd,
    paired_test,
    plot_critical_difference,
)
from skintl.labels import DEFAULT_CLASSES


def _predictions(n: int = 300, n_patients: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.choice(DEFAULT_CLASSES, size=n)
    logits = rng.normal(size=(n, 3)) + 1.5 * (y[:, None] == np.array(DEFAULT_CLASSES))
    prob = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)  # rounding: ties
    prob /= prob.sum(1, keepdims=True)
    df = pd.DataFrame({f"prob_{c}": prob[:, i] for i, c in enumerate(DEFAULT_CLASSES)})
    df["y_true"] = y
    df["y_pred"] = np.array(DEFAULT_CLASSES)[prob.argmax(1)]
    df["patient_id"] = rng.integers(0, n_patients, size=n).astype(str)
    return df


def _sk_auc(df: pd.DataFrame) -> float:
    labels = sorted(DEFAULT_CLASSES)  # sklearn wants them ordered
    prob = df[[f"prob_{c}" for c in labels]].to_numpy()
    return roc_auc_score(df.y_true, prob, multi_class="ovr", average="macro", labels=labels)


def test_metric_helpers_match_sklearn_including_row_weights() -> None:
    df = _predictions()
    assert balanced_accuracy(df) == pytest.approx(balanced_accuracy_score(df.y_true, df.y_pred))
    assert macro_auc(df) == pytest.approx(_sk_auc(df))
    w = np.random.default_rng(1).integers(0, 3, size=len(df))  # row i repeated w[i] times
    rep = df.iloc[np.repeat(np.arange(len(df)), w)]
    ba = balanced_accuracy_score(rep.y_true, rep.y_pred)
    assert balanced_accuracy.weighted(df)(w.astype(float)) == pytest.approx(ba)
    assert macro_auc.weighted(df)(w.astype(float)) == pytest.approx(_sk_auc(rep))


def test_bootstrap_draws_whole_patients() -> None:
    df = _predictions(n=120, n_patients=8)
    sizes = df.patient_id.value_counts()
    seen: list[pd.DataFrame] = []

    def spy(d: pd.DataFrame) -> float:  # a plain callable takes the row-copying path
        seen.append(d)
        return float((d.y_true == d.y_pred).mean())

    bootstrap_ci(df, spy, n_boot=50)
    assert len(seen) == 51  # 50 resamples + the estimate on the full table
    for d in seen[:-1]:
        counts = d.groupby("patient_id").size()
        times = counts / sizes[counts.index]
        assert np.all(times == np.round(times))  # only whole patients, k times each
        assert times.sum() == len(sizes)  # as many patient draws as patients
        for _pid, rows in d.groupby("patient_id"):  # each row of a patient equally often
            assert rows.index.value_counts().nunique() == 1


def test_bootstrap_ci_width_reflects_patients_not_patches() -> None:
    # 10 patients x 50 patches; patient 0 gets every patch wrong, the others none. Accuracy of
    # a resample is 1 - k/10 with k ~ Binomial(10, 0.1): P(k >= 3) = 7%, P(k >= 4) = 1.3%, so
    # the 95% interval is [0.7, 1.0]. Resampling patches would give about [0.87, 0.93].
    df = pd.DataFrame({"patient_id": np.repeat(np.arange(10), 50), "y_true": "AK"})
    df["y_pred"] = np.where(df.patient_id == 0, "SK", "AK")
    est, low, high = bootstrap_ci(df, balanced_accuracy, n_boot=2000, seed=0)
    assert est == pytest.approx(0.9)
    assert low == pytest.approx(0.7)
    assert high == pytest.approx(1.0)
    slow = bootstrap_ci(df, lambda d: float((d.y_true == d.y_pred).mean()), n_boot=200)
    fast = bootstrap_ci(df, balanced_accuracy, n_boot=200)
    assert slow == pytest.approx(fast)  # same draws: fast and row-copying paths agree


def test_bootstrap_errors() -> None:
    df = _predictions(n=10, n_patients=1)
    with pytest.raises(ValueError, match="at least 2 patient_id"):
        bootstrap_ci(df, macro_auc)


def _ordered_table() -> pd.DataFrame:
    # a > b > c in each of 6 blocks, with distinct differences (exact Wilcoxon, no ties).
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.01, size=(6, 3))
    return pd.DataFrame(base + np.array([0.9, 0.8, 0.7]), columns=["a", "b", "c"])


def test_friedman_matches_scipy_and_holm_hand_example() -> None:
    scores = _ordered_table()
    res = friedman_posthoc(scores)
    ref = stats.friedmanchisquare(scores.a, scores.b, scores.c)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(12.0)  # 12/(N k (k+1)) sum R^2 - 3N(k+1), R = 6,12,18
    assert res.mean_ranks.to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    # Every pair: all 6 differences positive -> exact two-sided p = 2 / 2**6 = 0.03125.
    # Holm on three equal p: 3p = 0.09375, then max(3p, 2p), max(3p, p) -> all 0.09375.
    np.testing.assert_allclose(res.pairwise.p, 0.03125)
    np.testing.assert_allclose(res.pairwise.p_holm, 0.09375)
    assert not res.pairwise.significant.any()
    assert list(zip(res.pairwise.a, res.pairwise.b, strict=True)) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]
    assert res.summary.splitlines()[2].endswith("a")
    assert _cliques(res) == [(0, 2)]
    low_first = friedman_posthoc(scores, higher_is_better=False)
    assert list(low_first.mean_ranks.index) == ["c", "b", "a"]


def test_holm_matches_unequal_pvalues_on_random_table() -> None:
    rng = np.random.default_rng(3)
    scores = pd.DataFrame(
        rng.normal(size=(15, 4)) + np.array([0, 0.3, 0.8, 1.5]), columns=list("wxyz")
    )
    res = friedman_posthoc(scores)
    p = np.array(
        [
            stats.wilcoxon(scores[a], scores[b]).pvalue
            for a, b in zip(res.pairwise.a, res.pairwise.b, strict=True)
        ]
    )
    np.testing.assert_allclose(res.pairwise.p, p)
    order = np.argsort(p)  # Holm by hand: running max of (m - i) * p_(i), capped at 1
    adj = np.minimum(1, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    expected = np.empty_like(adj)
    expected[order] = adj
    np.testing.assert_allclose(res.pairwise.p_holm, expected)
    assert res.pairwise.significant.tolist() == (expected < 0.05).tolist()
    assert res.mean_ranks.index[0] == "z"


def test_friedman_clear_errors() -> None:
    scores = _ordered_table()
    with pytest.raises(ValueError, match=r"at least 3 configurations.*paired_test"):
        friedman_posthoc(scores.iloc[:, :2])
    with pytest.raises(ValueError, match="at least 2 blocks"):
        friedman_posthoc(scores.iloc[:1])
    with pytest.raises(ValueError, match="missing scores"):
        friedman_posthoc(scores.mask(scores > 0.805))
    with pytest.raises(ValueError, match="tie in every block"):
        friedman_posthoc(pd.DataFrame(np.ones((5, 3)), columns=list("abc")))


def test_nemenyi_cd_matches_demsar_table() -> None:
    # Demšar (2006) Table 5(a): q_0.05 = 2.569 for k = 4 classifiers.
    assert nemenyi_cd(4, 10) == pytest.approx(2.569 * math.sqrt(4 * 5 / 60), rel=1e-3)


def test_paired_test_equals_scipy_wilcoxon() -> None:
    rng = np.random.default_rng(5)
    a = pd.Series(rng.normal(0.8, 0.05, 12), index=[f"p{i}" for i in range(12)])
    b = a - rng.normal(0.02, 0.03, 12)
    res = paired_test(a, b.sample(frac=1, random_state=0))  # shuffled: aligned on the index
    ref = stats.wilcoxon(a, b)
    assert (res.statistic, res.p_value) == pytest.approx((ref.statistic, ref.pvalue))
    assert res.median_difference == pytest.approx(np.median(a - b))
    assert res.n_blocks == 12
    with pytest.raises(ValueError, match="zero"):
        paired_test(a, a)


def test_layer_effect() -> None:
    rng = np.random.default_rng(2)
    rows = [
        {"encoder": enc, "layer": layer, "fold": f, "balanced_accuracy": m + rng.normal(0, 0.01)}
        for enc, layers in {"resnet50": [0.6, 0.8, 0.7], "moco": [0.7, 0.6]}.items()
        for layer, m in zip(["layer2", "layer3", "layer4"], layers, strict=False)
        for f in range(6)
    ]
    out = layer_effect(pd.DataFrame(rows)).set_index("encoder")
    assert out.loc["resnet50", "best_layer"] == "layer3"
    assert out.loc["resnet50", "test"] == "friedman"
    assert out.loc["resnet50", "statistic"] == pytest.approx(12.0)  # identical ranks every fold
    assert out.loc["moco", "best_layer"] == "layer2"
    assert out.loc["moco", "test"] == "wilcoxon"
    with pytest.raises(ValueError, match="duplicate"):
        layer_effect(pd.DataFrame(rows + rows[:1]))


def test_plot_critical_difference_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scores = pd.DataFrame(
        rng.normal(size=(15, 5)) + np.arange(5), columns=[f"cfg{i}" for i in range(5)]
    )
    out = plot_critical_difference(friedman_posthoc(scores), tmp_path / "cd.png", title="CD")
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 200
    assert list(tmp_path.iterdir()) == [out]  # written atomically, no temporary left behind
