"""The report's file side: finding cells, CSVs written, per-cell caches reused and invalidated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from skintl.report import stage
from skintl.report import stats_tables as st
from skintl.report.stats_tables import Cell

N_BOOT = 30


def test_find_cells_follows_metrics_csv_and_skips_cells_without_predictions(
    fake_run: Path,
) -> None:
    cells = stage.find_cells(fake_run)
    assert cells[0] == Cell("enc_a", "layer1", "mlp")
    assert Cell("baseline", "-", "lbp_yiq_svm") in cells and len(cells) == 6
    stage.predictions_path(fake_run, cells[1]).unlink()
    assert cells[1] not in stage.find_cells(fake_run)
    for p in (fake_run / "evaluation").glob("*/*/*/predictions.parquet"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="skintl evaluate"):
        stage.find_cells(fake_run)


def test_build_writes_the_csv_tables(fake_run: Path) -> None:
    tables = stage.build_stats_tables(fake_run, n_boot=N_BOOT)
    out = fake_run / "report"
    for name in tables.csv_tables():
        assert (out / name).is_file()
    main = pd.read_csv(out / "main_table.csv", keep_default_na=False)
    assert list(main.columns[:3]) == ["encoder", "layer", "classifier"]
    assert len(main) == 6 and "balanced_accuracy_low" in main
    pp = pd.read_csv(out / "per_patient.csv")
    assert len(pp) == 6 * 6 and {"patient_id", "fold", "balanced_accuracy"} <= set(pp.columns)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def _count_bootstraps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = st.bootstrap_ci

    def spy(df: pd.DataFrame, *a: Any, **kw: Any) -> tuple[float, float, float]:
        calls.append(len(df))
        return real(df, *a, **kw)

    monkeypatch.setattr(st, "bootstrap_ci", spy)
    return calls


def test_rerun_reads_the_per_cell_cache(fake_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = stage.build_stats_tables(fake_run, n_boot=N_BOOT)
    calls = _count_bootstraps(monkeypatch)

    def no_tests(*a: Any, **kw: Any) -> None:
        raise AssertionError("the Friedman / layer tests should come from the cache")

    monkeypatch.setattr(stage, "statistical_tests", no_tests)
    again = stage.build_stats_tables(fake_run, n_boot=N_BOOT)
    assert calls == []
    pd.testing.assert_frame_equal(again.main, first.main)
    pd.testing.assert_frame_equal(again.per_patient, first.per_patient)
    assert again.friedman is not None and first.friedman is not None
    pd.testing.assert_series_equal(again.friedman.mean_ranks, first.friedman.mean_ranks)


def test_changed_predictions_or_settings_are_recomputed(
    fake_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage.build_stats_tables(fake_run, n_boot=N_BOOT)
    cell = Cell("enc_a", "layer1", "mlp")
    path = stage.predictions_path(fake_run, cell)
    pred = pd.read_parquet(path)
    pred.loc[pred.y_true == "SK", "y_pred"] = "AK"  # the perfect cell now misses every SK
    pred.to_parquet(path, index=False)
    calls = _count_bootstraps(monkeypatch)
    tables = stage.build_stats_tables(fake_run, n_boot=N_BOOT)
    assert len(calls) == 3  # one cell x three metrics
    row = tables.main.iloc[0]
    assert row.balanced_accuracy == pytest.approx(2 / 3)
    stage.build_stats_tables(fake_run, n_boot=N_BOOT + 1)
    assert len(calls) == 3 + 3 * 6  # a new n_boot invalidates every cell


def test_embedding_cache_and_feature_sets(fake_run: Path) -> None:
    cfg = stage.read_config(fake_run)
    sets = stage.feature_sets(fake_run, cfg)
    layers = ["layer1", "layer2"]
    assert sets == {"enc_a": layers, "enc_b": layers, "lbp_yiq": ["handcrafted"]}
    calls = []

    def embed(X: Any) -> Any:
        calls.append(X.shape)
        return np.arange(len(X)), np.zeros((len(X), 2))

    for _ in range(2):
        _rows, coords = stage.cached_embedding(fake_run, "enc_a", "layer1", embed, {"s": 1}) or (
            0,
            0,
        )
    assert calls == [(60, 8)] and coords.shape == (60, 2)
    assert stage.cached_embedding(fake_run, "enc_a", "layer1", embed, {"s": 1}, n_rows=59) is None
    assert stage.cached_embedding(fake_run, "baseline", "-", embed, {"s": 1}) is None
