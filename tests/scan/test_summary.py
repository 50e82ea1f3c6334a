"""Summaries over photos and paired mode differences, on a hand-made photos table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skintl.evaluation.stats import group_resamples
from skintl.scan.summary import gallery, paired_differences, reference_mode, summarise

# Patient p1 has two photos; superpixel did not scan photo d; dense has no specificity on c.
EXACT = {"a": 0.20, "b": 0.50, "c": 0.10, "d": 0.40, "e": 0.30, "f": 0.25}
DENSE = {"a": 0.30, "b": 0.45, "c": 0.30, "d": 0.40, "e": 0.10, "f": 0.55}
SUPERPIXEL = {"a": 0.25, "b": 0.50, "c": 0.20, "e": 0.35, "f": 0.20}
PATIENT = {"a": "p1", "b": "p1", "c": "p2", "d": "p3", "e": "p4", "f": "p5"}


@pytest.fixture
def photos() -> pd.DataFrame:
    rows = []
    for mode, dice in (("exact", EXACT), ("dense", DENSE), ("superpixel", SUPERPIXEL)):
        for photo, value in dice.items():
            spec = np.nan if (mode, photo) == ("dense", "c") else 1.0 - value
            burden = 100 * value - 30  # signed burden error, negative for some photos
            row = {"photo": f"/x/{photo}.jpg", "patient_id": PATIENT[photo], "mode": mode}
            row |= {"target_class": "AK", "dice": value, "region_specificity": spec}
            rows.append(row | {"burden_error_pct": burden, "burden_abs_error_pct": abs(burden)})
    return pd.DataFrame(rows)


def _row(diffs: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    hit = diffs[(diffs["metric"] == metric) & (diffs["mode"] == mode)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_paired_difference_is_mode_minus_reference_on_shared_photos(photos: pd.DataFrame) -> None:
    diffs = paired_differences(photos, "exact", n_boot=200, seed=0)
    assert set(diffs["mode"]) == {"dense", "superpixel"} and set(diffs["reference"]) == {"exact"}
    dense = _row(diffs, "dice", "dense")
    assert dense["n_photos"] == 6 and dense["n_patients"] == 5
    assert dense["mean_difference"] == pytest.approx(np.mean([DENSE[p] - EXACT[p] for p in EXACT]))
    sp = _row(diffs, "dice", "superpixel")  # photo d was not scanned in superpixel mode
    assert sp["n_photos"] == 5 and sp["n_patients"] == 4
    expect = np.mean([SUPERPIXEL[p] - EXACT[p] for p in SUPERPIXEL])
    assert sp["mean_difference"] == pytest.approx(expect)
    spec = _row(diffs, "region_specificity", "dense")  # photo c has no dense specificity
    assert spec["n_photos"] == 5
    expect = np.mean([(1 - DENSE[p]) - (1 - EXACT[p]) for p in EXACT if p != "c"])
    assert spec["mean_difference"] == pytest.approx(expect)
    absolute = _row(diffs, "burden_abs_error_pct", "dense")
    expect = np.mean([abs(100 * DENSE[p] - 30) - abs(100 * EXACT[p] - 30) for p in EXACT])
    assert absolute["mean_difference"] == pytest.approx(expect)


def test_paired_ci_resamples_patients_keeping_pairs(photos: pd.DataFrame) -> None:
    diffs = paired_differences(photos, "exact", n_boot=500, seed=3)
    again = paired_differences(photos, "exact", n_boot=500, seed=3)
    pd.testing.assert_frame_equal(diffs, again)
    other = paired_differences(photos, "exact", n_boot=500, seed=4)
    assert not np.allclose(diffs["ci_low"], other["ci_low"])
    assert (diffs["ci_low"] <= diffs["mean_difference"]).all()
    assert (diffs["mean_difference"] <= diffs["ci_high"]).all()
    # the same interval by hand: draw patients, every photo of a drawn patient keeps its pair
    order = sorted(EXACT, key=lambda p: PATIENT[p])
    d = np.array([DENSE[p] - EXACT[p] for p in order])
    groups = np.array([PATIENT[p] for p in order])
    boot = [w @ d / w.sum() for w in group_resamples(groups, 500, 3)]
    dense = _row(diffs, "dice", "dense")
    assert [dense["ci_low"], dense["ci_high"]] == pytest.approx(np.percentile(boot, [2.5, 97.5]))


def test_wilcoxon_runs_over_patients(photos: pd.DataFrame) -> None:
    dense = _row(paired_differences(photos, "exact", n_boot=50, seed=0), "dice", "dense")
    per_patient = pd.Series({p: DENSE[p] - EXACT[p] for p in EXACT}).groupby(PATIENT).mean()
    res = stats.wilcoxon(per_patient.to_numpy())
    assert dense["p_value"] == pytest.approx(res.pvalue)
    assert dense["wilcoxon_statistic"] == pytest.approx(res.statistic)
    same = photos.assign(mode=photos["mode"].replace({"dense": "copy"}))
    same = pd.concat([same, photos[photos["mode"] == "exact"].assign(mode="dense")])
    tie = _row(paired_differences(same, "exact", n_boot=50, seed=0), "dice", "dense")
    assert tie["mean_difference"] == 0 and tie["p_value"] == 1.0


def test_no_shared_photo_gives_no_estimate(photos: pd.DataFrame) -> None:
    empty = photos[photos["mode"] == "exact"].assign(mode="empty", dice=np.nan)
    diffs = paired_differences(pd.concat([photos, empty]), "exact", n_boot=50, seed=0)
    row = _row(diffs, "dice", "empty")
    assert row["n_photos"] == 0 and np.isnan(row["mean_difference"]) and np.isnan(row["p_value"])
    assert _row(diffs, "dice", "dense")["n_photos"] == 6  # the other modes are unaffected


def test_reference_is_exact_when_scanned() -> None:
    assert reference_mode(["dense", "exact", "superpixel"]) == "exact"
    assert reference_mode(["superpixel", "dense"]) == "superpixel"


def test_summary_has_absolute_burden_error_with_ci(photos: pd.DataFrame) -> None:
    summary = summarise(photos, n_boot=200, seed=0)
    row = summary[(summary["mode"] == "dense") & (summary["metric"] == "burden_abs_error_pct")]
    row = row.iloc[0]
    assert row["mean"] == pytest.approx(np.mean([abs(100 * v - 30) for v in DENSE.values()]))
    assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["ci_low"] < row["ci_high"]
    one = summarise(photos[photos["patient_id"] == "p1"], n_boot=200, seed=0)
    assert one["ci_low"].isna().all() and one["mean"].notna().all()  # one patient: no interval


def test_summary_has_medians_beside_means(photos: pd.DataFrame) -> None:
    summary = summarise(photos, n_boot=300, seed=0)
    row = summary[(summary["mode"] == "dense") & (summary["metric"] == "dice")].iloc[0]
    assert row["median"] == pytest.approx(np.median(list(DENSE.values())))
    assert row["median_ci_low"] <= row["median"] <= row["median_ci_high"]
    # the interval by hand: the median of each resample's photos, a patient's photos together
    order = sorted(DENSE, key=lambda p: PATIENT[p])
    x, groups = np.array([DENSE[p] for p in order]), np.array([PATIENT[p] for p in order])
    boot = [np.median(np.repeat(x, w.astype(int))) for w in group_resamples(groups, 300, 0)]
    assert [row["median_ci_low"], row["median_ci_high"]] == pytest.approx(
        np.percentile(boot, [2.5, 97.5])
    )


def test_region_precision_pools_every_photo() -> None:
    # p1: 1 of 4 regions right; p2: no prediction; p3: 3 of 3 right; p4: no prediction
    tp, n = [1, 0, 3, 0], [4, 0, 3, 0]
    table = pd.DataFrame({
        "photo": ["a", "b", "c", "d"], "patient_id": ["p1", "p2", "p3", "p4"], "mode": "dense",
        "target_class": "AK", "pred_regions_tp": tp, "pred_regions": n,
        "region_precision": [0.25, np.nan, 1.0, np.nan],
    })  # fmt: skip
    row = summarise(table, n_boot=200, seed=0).iloc[0]
    assert row["metric"] == "region_precision" and row["n_photos"] == 4
    assert row["mean"] == pytest.approx(4 / 7)  # not the mean of 0.25 and 1.0 over two photos
    assert row["median"] == pytest.approx(0.625)  # over the photos with a prediction


def test_gallery_picks_best_median_and_worst_by_dice(photos: pd.DataFrame) -> None:
    picks = gallery(photos.assign(flooded=0.0))
    dense = [p for p in picks if p["mode"] == "dense"]
    ranked = sorted(DENSE, key=lambda p: -DENSE[p])  # f .55, b .45, d .40, a .30, c .30, e .10
    assert [p["rank"] for p in dense] == ["best", "median", "worst"]
    assert [p["stem"] for p in dense] == [ranked[0], ranked[3], ranked[-1]]
    assert [p["dice"] for p in dense] == sorted((p["dice"] for p in dense), reverse=True)
    two = gallery(photos[photos["photo"].isin(["/x/a.jpg", "/x/b.jpg"])])
    assert [p["rank"] for p in two if p["mode"] == "exact"] == ["best", "worst"]


def test_report_reads_a_summary_from_before_medians(tmp_path: Path) -> None:
    from skintl.report.html import _scan_context

    (tmp_path / "scan").mkdir()
    old = pd.DataFrame([{"mode": "dense", "target_class": "AK", "metric": "dice", "n_photos": 3,
                         "mean": 0.4, "ci_low": 0.3, "ci_high": 0.5}])  # fmt: skip
    old.to_csv(tmp_path / "scan" / "summary.csv", index=False)
    ctx = _scan_context(tmp_path)
    assert ctx is not None and np.isnan(ctx["rows"][0]["median"]) and ctx["gallery"] == []
