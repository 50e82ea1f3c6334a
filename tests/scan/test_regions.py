"""Region matching, metrics and overlay colours on a hand-made case with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from skintl.scan.draw import DOCTOR, FALSE_POSITIVE, LEGEND_HEIGHT, MISSED, TRUE_POSITIVE, overlay
from skintl.scan.regions import (
    RegionRule,
    class_regions,
    geojson,
    match_regions,
    outline,
    photo_metrics,
)


@pytest.fixture
def case() -> dict[str, np.ndarray]:
    """100 x 100 skin; doctor regions A (rows 10-29, cols 10-29) and B (rows 60-79, cols 60-79);
    predictions: P1 overlaps A (rows 20-39, cols 10-29), P2 overlaps nothing (rows 10-19,
    cols 70-89). Answer: A detected, B missed; P1 true positive, P2 false positive."""
    doctor = np.zeros((100, 100), bool)
    doctor[10:30, 10:30] = doctor[60:80, 60:80] = True
    pred = np.zeros((100, 100), np.int64)
    pred[20:40, 10:30] = 1
    pred[10:20, 70:90] = 2
    return {"doctor": doctor, "pred": pred, "skin": np.ones((100, 100), bool)}


def test_matching_and_metrics(case: dict[str, np.ndarray]) -> None:
    m = match_regions(case["pred"], case["doctor"])
    assert m.pred_tp.tolist() == [True, False] and m.doctor_found.tolist() == [True, False]
    row = photo_metrics(case["pred"], case["doctor"], case["skin"], size=10, px_area=4.0)
    inter, pred_px, doc_px = 200, 600, 800
    assert row["dice"] == pytest.approx(2 * inter / (pred_px + doc_px))
    assert row["iou"] == pytest.approx(inter / (pred_px + doc_px - inter))
    assert row["region_sensitivity"] == 0.5 and row["region_precision"] == 0.5
    assert (row["pred_regions_tp"], row["pred_regions_fp"], row["doctor_regions"]) == (1, 1, 2)
    # 10 x 10 blocks: 100 blocks, 8 touch the doctor's regions; predictions touch 4 + 2 of the
    # other 92 (P1's rows 30-39 give 2 blocks, P2 gives 2): 88 true negatives of 92
    assert row["healthy_blocks"] == 92 and row["region_specificity"] == pytest.approx(88 / 92)
    assert row["pred_area_px"] == 600 * 4.0 and row["doctor_area_px"] == 800 * 4.0
    assert row["pred_burden_pct"] == 6.0 and row["burden_error_pct"] == pytest.approx(-2.0)
    assert row["burden_abs_error_pct"] == pytest.approx(2.0)
    assert row["pred_regions"] == 2


def test_overlay_colours(case: dict[str, np.ndarray]) -> None:
    m = match_regions(case["pred"], case["doctor"])
    photo = np.full((100, 100, 3), 200, np.uint8)
    img = overlay(photo, case["pred"], m.pred_tp, m.doctor_labels, m.doctor_found, width=2)
    assert img.shape[1:] == (100, 3) and img.shape[0] >= 100 + 2 * LEGEND_HEIGHT  # wrapped
    assert tuple(img[10, 15]) == DOCTOR  # detected doctor region A's top edge
    assert tuple(img[60, 70]) == MISSED  # missed doctor region B's edge
    assert tuple(img[39, 20]) == TRUE_POSITIVE  # P1's bottom edge
    assert tuple(img[10, 80]) == FALSE_POSITIVE  # P2's top edge
    inside_fp = img[15, 80].astype(int)
    assert (inside_fp < 200).all() and (inside_fp > 100).all()  # tinted, not painted over
    assert tuple(img[50, 50]) == (200, 200, 200)  # untouched skin
    legend = {tuple(c) for c in img[100:].reshape(-1, 3)}
    assert {DOCTOR, TRUE_POSITIVE, FALSE_POSITIVE, MISSED} <= legend


def test_regions_from_probabilities() -> None:
    prob = np.full((60, 60, 3), np.nan, np.float32)
    prob[:, :50] = (0.1, 0.8, 0.1)  # healthy
    prob[10:30, 10:30] = (0.7, 0.2, 0.1)  # an AK square
    prob[40:42, 40:42] = (0.7, 0.2, 0.1)  # a speck under the minimum area
    classes = ["AK", "healthy", "SK"]
    labels = class_regions(prob, classes, "AK", RegionRule(min_area=20, radius=0))
    assert labels.max() == 1 and (labels > 0).sum() == 400
    opened = class_regions(prob, classes, "AK", RegionRule(min_area=1, radius=2))
    assert opened.max() == 1 and opened[10:30, 10:30].sum() > 380  # the speck is opened away
    thr = class_regions(prob, classes, "AK", RegionRule(min_area=1, radius=0, threshold=0.75))
    assert thr.max() == 0
    gj = geojson({"AK": labels}, prob, classes, scale=0.5)
    (feat,) = gj["features"]
    assert feat["properties"]["area_px"] == 1600 and feat["properties"]["class"] == "AK"
    assert feat["properties"]["mean_probability"] == pytest.approx(0.7)
    xs = [p[0] for p in feat["geometry"]["coordinates"][0]]
    assert min(xs) == pytest.approx(2 * 9.5) and max(xs) == pytest.approx(2 * 29.5)


def test_outline_of_a_square() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:7] = True
    (ring,) = outline(mask)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert (min(xs), max(xs), min(ys), max(ys)) == (2.5, 6.5, 1.5, 4.5)
