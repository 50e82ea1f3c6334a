"""Report tables: known per-patient scores, CI wiring, Friedman and layer-effect wiring."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from skintl.evaluation import stats
from skintl.labels import DEFAULT_CLASSES
from skintl.report import stats_tables as st
from skintl.report.stats_tables import Cell

N_BOOT = 40
CLASSES = list(DEFAULT_CLASSES)
PATIENTS = [f"P{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def preds(fake_predictions: dict[Cell, pd.DataFrame]) -> dict[Cell, pd.DataFrame]:
    return fake_predictions


@pytest.fixture(scope="module")
def summaries(preds: dict[Cell, pd.DataFrame]) -> dict[Cell, dict[str, Any]]:
    return {c: st.cell_summary(p, n_boot=N_BOOT, seed=1) for c, p in preds.items()}


def test_macro_f1_matches_sklearn_including_row_weights() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(CLASSES, size=200)
    y_pred = np.where(rng.random(200) < 0.7, y, rng.choice(CLASSES, size=200))
    df = pd.DataFrame({"y_true": y, "y_pred": y_pred})
    for c in CLASSES:
        df[f"prob_{c}"] = (y_pred == c).astype(float)

    def sk(d: pd.DataFrame) -> float:
        return float(f1_score(d.y_true, d.y_pred, labels=CLASSES, average="macro", zero_division=0))

    assert st.macro_f1(df) == pytest.approx(sk(df))
    w = rng.integers(0, 3, size=len(df))
    w[df.y_true.to_numpy() == "SK"] = 0  # a class absent from a resample scores F1 = 0
    rep = df.iloc[np.repeat(np.arange(len(df)), w)]
    assert st.macro_f1.weighted(df)(w.astype(float)) == pytest.approx(sk(rep))


def test_per_patient_scores_have_the_known_values(preds: dict[Cell, pd.DataFrame]) -> None:
    perfect = st.per_group_scores(preds[Cell("enc_a", "layer1", "mlp")], "patient_id")
    assert list(perfect.patient_id) == PATIENTS
    assert (perfect.balanced_accuracy == 1).all() and (perfect.n == 10).all()
    flipped = st.per_group_scores(preds[Cell("enc_a", "layer2", "mlp")], "patient_id")
    ba = flipped.set_index("patient_id").balanced_accuracy
    assert ba["P1"] == pytest.approx(2 / 3) and ba["P2"] == pytest.approx(2 / 3)
    assert ba["P3"] == 1
    acc = flipped.set_index("patient_id").accuracy
    assert acc["P1"] == pytest.approx(0.7)
    healthy = st.per_group_scores(preds[Cell("enc_b", "layer1", "mlp")], "fold")
    assert np.allclose(healthy.balanced_accuracy, 1 / 3)
    assert list(healthy.fold) == list(range(6)) and (healthy.n_patients == 1).all()


def test_cell_summary_delegates_the_ci_to_bootstrap_over_patients(
    preds: dict[Cell, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def spy(df: pd.DataFrame, metric_fn: Any, **kw: Any) -> tuple[float, float, float]:
        calls.append({"df": df, "metric_fn": metric_fn, **kw})
        return stats.bootstrap_ci(df, metric_fn, **kw)

    monkeypatch.setattr(st, "bootstrap_ci", spy)
    pred = preds[Cell("enc_a", "layer2", "mlp")]
    ci = st.cell_summary(pred, n_boot=N_BOOT, alpha=0.1, seed=7)["ci"]
    assert [c["metric_fn"] for c in calls] == [
        stats.balanced_accuracy,
        stats.macro_auc,
        st.macro_f1,
    ]
    for c in calls:
        assert c["df"] is pred  # every patch of every patient; the resampling unit is stats'
        assert c.get("group_col", "patient_id") == "patient_id"
        assert (c["n_boot"], c["alpha"], c["seed"]) == (N_BOOT, 0.1, 7)
    for m in st.CI_METRICS:
        assert ci[f"{m}_low"] <= ci[m] <= ci[f"{m}_high"]
    assert ci["balanced_accuracy"] == pytest.approx(stats.balanced_accuracy(pred))
    assert ci["balanced_accuracy_low"] < ci["balanced_accuracy_high"]  # P1, P2 differ from rest


def test_main_table_has_one_row_per_cell_with_cis(summaries: dict[Cell, dict[str, Any]]) -> None:
    main = st.main_table(summaries)
    assert len(main) == len(summaries)
    assert list(main.encoder) == [c.encoder for c in summaries]
    for m in st.CI_METRICS:
        assert (main[f"{m}_low"] <= main[m] + 1e-12).all()
        assert (main[m] <= main[f"{m}_high"] + 1e-12).all()
    perfect = main.iloc[0]
    assert perfect[["balanced_accuracy", "auc_macro", "macro_f1"]].tolist() == [1.0, 1.0, 1.0]
    healthy = main.set_index(["encoder", "layer"]).loc[("enc_b", "layer1")]
    assert healthy.balanced_accuracy == pytest.approx(1 / 3) and healthy.auc_macro == 0.5
    assert (main.n == 60).all() and (main.n_patients == 6).all() and (main.n_folds == 6).all()


def test_friedman_runs_on_per_fold_balanced_accuracy(
    summaries: dict[Cell, dict[str, Any]],
) -> None:
    tables = st.assemble(summaries)
    scores = tables.fold_scores
    assert scores.shape == (6, 6) and list(scores.columns) == [c.name for c in summaries]
    assert np.allclose(scores["enc_b/layer1/mlp"], 1 / 3)
    direct = stats.friedman_posthoc(scores)
    assert tables.friedman is not None
    assert tables.friedman.statistic == pytest.approx(direct.statistic)
    assert tables.friedman.mean_ranks.index[0] == "enc_a/layer1/mlp"
    assert tables.friedman.mean_ranks.index[-1] == "enc_b/layer1/mlp"
    assert len(tables.friedman.pairwise) == 15
    csvs = tables.csv_tables()
    assert {"friedman.csv", "friedman_ranks.csv", "friedman_pairwise.csv"} <= set(csvs)


def test_friedman_round_trips_through_json(summaries: dict[Cell, dict[str, Any]]) -> None:
    import json

    res = st.assemble(summaries).friedman
    assert res is not None
    back = st.friedman_from_dict(json.loads(json.dumps(st.friedman_to_dict(res))))
    pd.testing.assert_series_equal(back.mean_ranks, res.mean_ranks)
    pd.testing.assert_frame_equal(back.pairwise, res.pairwise)
    assert back.summary == res.summary


def test_too_few_cells_give_a_reason_not_a_crash(summaries: dict[Cell, dict[str, Any]]) -> None:
    two = dict(list(summaries.items())[:2])
    tables = st.assemble(two)
    assert tables.friedman is None and "at least 3" in tables.friedman_note
    assert "friedman.csv" not in tables.csv_tables()


def test_layer_effect_per_encoder_leaves_out_cells_without_features(
    summaries: dict[Cell, dict[str, Any]],
) -> None:
    eff = st.assemble(summaries).layer_effect.set_index("encoder")
    assert list(eff.index) == ["enc_a", "enc_b"]  # no baseline, no single-layer descriptor
    assert eff.loc["enc_a", "best_layer"] == "layer1"
    assert eff.loc["enc_b", "best_layer"] == "layer2"
    assert (eff.test == "wilcoxon").all() and (eff.n_blocks == 6).all()


def test_best_cells_per_encoder(summaries: dict[Cell, dict[str, Any]]) -> None:
    best = st.best_cells(st.main_table(summaries))
    assert best == {
        "enc_a": Cell("enc_a", "layer1", "mlp"),
        "enc_b": Cell("enc_b", "layer2", "mlp"),
        "baseline": Cell("baseline", "-", "lbp_yiq_svm"),
        "lbp_yiq": Cell("lbp_yiq", "handcrafted", "svm_rbf"),
    }
    assert Cell("baseline", "-", "svm/x").slug == "baseline__-__svm_x"
