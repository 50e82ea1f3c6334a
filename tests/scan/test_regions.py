"""Region matching, metrics and overlay colours on a hand-made case with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from skintl.scan.draw import (
    DOCTOR,
    FALSE_POSITIVE,
    FLOOD,
    LEGEND_HEIGHT,
    MISSED,
    TRUE_POSITIVE,
    colour_bar,
    heatmap,
    overlay,
)
from skintl.scan.regions import (
    REGION_IOU,
    RegionRule,
    class_regions,
    flood_regions,
    geojson,
    match_regions,
    outline,
    photo_metrics,
)


@pytest.fixture
def case() -> dict[str, np.ndarray]:
    """100 x 100 skin; doctor regions A (rows 10-29, cols 10-29) and B (rows 60-79, cols 60-79);
    predictions: P1 overlaps A (rows 20-39, cols 10-29), P2 overlaps nothing (rows 10-19,
    cols 70-89). Answer: A detected (IoU 200 / 600 >= 0.2), B missed; P1 true positive, P2 false
    positive."""
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


@pytest.fixture
def floods() -> dict[str, np.ndarray]:
    """100 x 100 photo whose top 10 rows are not skin (9000 skin px). Doctor regions:
    A (rows 10-29, cols 10-29, 400 px), B (rows 60-69, cols 60-69, 100 px), C (rows 0-19,
    cols 70-89, 400 px, half of it off the skin). Predictions: P1 (rows 10-12) and P2 (rows
    27-29) over A's columns, 60 px each; F, a flood over rows 40-99 (6000 px, 2/3 of the skin)
    that covers B. Answer: A detected by P1 + P2 together (IoU 120 / 400 = 0.3, each alone 0.15);
    B touched by the flood only (IoU 100 / 6000), not detected; C missed."""
    skin = np.ones((100, 100), bool)
    skin[:10] = False
    doctor = np.zeros((100, 100), bool)
    doctor[10:30, 10:30] = doctor[60:70, 60:70] = doctor[0:20, 70:90] = True
    pred = np.zeros((100, 100), np.int64)
    pred[10:13, 10:30] = 1
    pred[27:30, 10:30] = 2
    pred[40:100, :] = 3
    return {"doctor": doctor, "pred": pred, "skin": skin}


def test_a_doctor_region_is_detected_by_the_iou_of_its_match(floods: dict) -> None:
    m = match_regions(floods["pred"], floods["doctor"])
    assert m.doctor_found.tolist() == [False, True, False]  # raster order: C, A, B
    assert m.doctor_touched.tolist() == [False, True, True]
    np.testing.assert_allclose(m.doctor_iou, [0.0, 120 / 400, 100 / 6000])
    assert m.pred_tp.tolist() == [True, True, False]  # the flood found nothing
    assert m.pred_touches.tolist() == [True, True, True]
    assert flood_regions(floods["pred"], floods["skin"]).tolist() == [False, False, True]
    strict = match_regions(floods["pred"], floods["doctor"], iou=0.35)
    assert not strict.doctor_found.any() and not strict.pred_tp.any()
    one = match_regions(np.where(floods["pred"] == 1, 1, 0), floods["doctor"])
    assert not one.doctor_found.any() and one.doctor_touched[1]  # P1 alone: IoU 0.15


def test_metrics_count_floods_and_both_detection_rules(floods: dict) -> None:
    row = photo_metrics(floods["pred"], floods["doctor"], floods["skin"], size=10, px_area=1.0)
    assert row["region_iou_threshold"] == REGION_IOU == 0.2
    assert (row["doctor_regions"], row["doctor_regions_detected"]) == (3, 1)
    assert row["doctor_regions_touched"] == 2 and row["doctor_regions_touched_by_flood"] == 1
    assert row["region_sensitivity"] == pytest.approx(1 / 3)
    assert row["region_sensitivity_any"] == pytest.approx(2 / 3)  # the old rule: B "found"
    assert row["region_precision"] == pytest.approx(2 / 3) and row["region_precision_any"] == 1
    assert (row["pred_regions_tp"], row["pred_regions_fp"]) == (2, 1)
    assert row["pred_floods"] == 1 and row["flooded"] == 1.0
    assert row["largest_region_skin_pct"] == pytest.approx(100 * 6000 / 9000)
    inter, pred_px, doc_px = 120 + 100, 6120, 900
    assert row["dice"] == pytest.approx(2 * inter / (pred_px + doc_px))


def test_burden_denominator_is_skin_union_doctor(floods: dict) -> None:
    row = photo_metrics(floods["pred"], floods["doctor"], floods["skin"], size=10, px_area=2.0)
    base = 9000 + 200  # skin, and C's 200 px the skin rule dropped
    assert row["doctor_burden_pct"] == pytest.approx(100 * 900 / base)
    assert row["pred_burden_pct"] == pytest.approx(100 * 6120 / base)
    assert row["burden_error_pct"] == pytest.approx(100 * (6120 - 900) / base)
    assert row["doctor_off_skin_px"] == 200 * 2.0
    assert row["doctor_off_skin_pct"] == pytest.approx(100 * 200 / 900)
    alone = photo_metrics(floods["pred"], None, floods["skin"], size=10, px_area=1.0)
    assert alone["pred_burden_pct"] == pytest.approx(100 * 6120 / 9000)  # no doctor: the skin
    assert alone["pred_floods"] == 1 and "dice" not in alone


def test_overlay_flags_floods(floods: dict) -> None:
    m = match_regions(floods["pred"], floods["doctor"])
    flood = flood_regions(floods["pred"], floods["skin"])
    photo = np.full((100, 100, 3), 200, np.uint8)
    img = overlay(photo, floods["pred"], m.pred_tp, m.doctor_labels, m.doctor_found,
                  pred_flood=flood)  # fmt: skip
    assert tuple(img[40, 50]) == FLOOD and tuple(img[10, 20]) == TRUE_POSITIVE
    assert FLOOD in {tuple(c) for c in img[100:].reshape(-1, 3)}  # named in the legend
    plain = overlay(photo, floods["pred"], m.pred_tp, m.doctor_labels, m.doctor_found)
    assert FLOOD not in {tuple(c) for c in plain.reshape(-1, 3)}


def test_heatmap_has_a_colour_bar_naming_its_class() -> None:
    from matplotlib import colormaps

    photo = np.full((60, 200, 3), 128, np.uint8)
    prob = np.full((60, 200), np.nan)
    prob[10:50, 20:180] = 0.9
    ak, sk = heatmap(photo, prob, "probability of AK"), heatmap(photo, prob, "probability of SK")
    bar = colour_bar(200, "probability of AK")
    assert ak.shape == (60 + len(bar), 200, 3) and np.array_equal(ak[60:], bar)
    row = bar[LEGEND_HEIGHT]  # through the ramp: black at 0, pale yellow at 1
    ends = np.asarray(colormaps["inferno"]([0.0, 1.0]))[:, :3] * 255
    np.testing.assert_allclose(row[12], ends[0], atol=2)
    np.testing.assert_allclose(row[200 - 13], ends[1], atol=2)
    assert not np.array_equal(ak[60:], sk[60:])  # the title names the class
    np.testing.assert_array_equal(ak[:60], sk[:60])
