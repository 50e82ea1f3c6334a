"""Lesion regions from probability maps, their outlines, and metrics against the doctor's.

Region matching (after Spyridonos et al. 2017, made stricter): the predicted regions that touch a
doctor region form its match, and the doctor region is *detected* when their union reaches an
IoU of at least ``iou`` (default :data:`REGION_IOU`) with it. The original "any overlap" rule is
reported beside it (``region_sensitivity_any``): under it, a prediction flooding the photo
"detects" every lesion. A predicted region is a *true positive* when it belongs to the match of
a detected doctor region, a *false positive* otherwise. A predicted region over
:data:`FLOOD_FRACTION` of the skin is a *flood*: counted, and flagged on the overlay.

The burden is measured against skin union doctor region: the skin rule drops some lesion pixels
(pale scale, ink), which would otherwise count in the doctor's numerator but not in the
denominator; how much of the doctor's region lies off the skin mask is reported.

Region specificity needs negatives, which healthy skin does not come in: the skin outside the
doctor's regions is cut into ``size x size`` blocks on a grid (the patch size, as the original
patch-level evaluation), and a block that is mostly skin is a true negative when no predicted
pixel falls in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from skintl.scan.skin import drop_small, morph


@dataclass(frozen=True)
class RegionRule:
    """Argmax (or ``threshold`` on the class probability), opening and closing with a disk of
    ``radius`` px, then components under ``min_area`` px dropped."""

    min_area: int
    radius: int
    threshold: float | None = None


def class_regions(
    prob: np.ndarray, classes: list[str], target: str, rule: RegionRule
) -> np.ndarray:
    """(H, W, K) map (NaN off the skin) -> (H, W) int labels of ``target`` regions (0 = none)."""
    k = classes.index(target)
    valid = ~np.isnan(prob[..., 0])
    if rule.threshold is None:
        filled = np.where(valid[..., None], prob, -1.0)
        hit = valid & (filled.argmax(axis=2) == k)
    else:
        hit = valid & (np.nan_to_num(prob[..., k], nan=0.0) >= rule.threshold)
    hit = morph(morph(hit, "open", rule.radius), "close", rule.radius) & valid
    hit = drop_small(hit, rule.min_area)
    labels, _ = ndimage.label(hit, structure=np.ones((3, 3)))
    return np.asarray(labels)


def outline(mask: np.ndarray) -> list[list[tuple[float, float]]]:
    """Closed (x, y) polygons tracing a bool mask's boundary (pixel-centre coordinates)."""
    from skimage.measure import find_contours

    contours = find_contours(np.pad(mask.astype(np.float32), 1), 0.5)
    return [[(float(c - 1), float(r - 1)) for r, c in cont] for cont in contours if len(cont) > 2]


#: a doctor region is detected when the predicted regions touching it reach this IoU with it
REGION_IOU = 0.2
#: a predicted region over this share of the skin is a flood
FLOOD_FRACTION = 0.5


@dataclass
class Matching:
    """Which doctor regions were found, and which predicted regions found them.

    Attributes:
        pred_tp: (n_pred,) bool, region ``i + 1`` is in the match of a detected doctor region.
        pred_touches: (n_pred,) bool, region ``i + 1`` touches a doctor region.
        doctor_found: (n_doctor,) bool, detected under the IoU rule.
        doctor_touched: (n_doctor,) bool, touched by a prediction (the any-overlap rule).
        doctor_iou: (n_doctor,) IoU of each doctor region with its match (0 when untouched).
        doctor_labels: (H, W) int, doctor regions (8-connected), 0 outside.
    """

    pred_tp: np.ndarray
    pred_touches: np.ndarray
    doctor_found: np.ndarray
    doctor_touched: np.ndarray
    doctor_iou: np.ndarray
    doctor_labels: np.ndarray


def match_regions(pred: np.ndarray, doctor: np.ndarray, iou: float = REGION_IOU) -> Matching:
    """Match predicted region labels (H, W) against the doctor's bool mask (H, W)."""
    doc, n_doc = ndimage.label(doctor, structure=np.ones((3, 3)))
    n_pred = int(pred.max())
    both = (pred > 0) & (doc > 0)
    # (doctor, predicted) label pairs that touch, each once
    d, p = np.unique(np.stack([doc[both], pred[both]]), axis=1) - 1
    pred_area = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:]
    doc_area = np.bincount(doc.ravel(), minlength=n_doc + 1)[1:]
    # every predicted pixel inside a doctor region belongs to a region of its match
    inter = np.bincount(doc[both], minlength=n_doc + 1)[1:]
    match_area = np.bincount(d, weights=pred_area[p], minlength=n_doc)
    ious = inter / np.maximum(doc_area + match_area - inter, 1)
    found = ious >= iou
    tp, touches = np.zeros(n_pred, bool), np.zeros(n_pred, bool)
    touches[p] = True
    tp[p[found[d]]] = True
    return Matching(tp, touches, found, inter > 0, ious, doc)


def flood_regions(
    pred: np.ndarray, skin: np.ndarray, fraction: float = FLOOD_FRACTION
) -> np.ndarray:
    """(n_pred,) bool: predicted regions covering more than ``fraction`` of the skin."""
    area = np.bincount(pred.ravel(), minlength=int(pred.max()) + 1)[1:]
    return np.asarray(area > fraction * max(int(skin.sum()), 1))


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def healthy_blocks(
    skin: np.ndarray, doctor: np.ndarray, pred: np.ndarray, size: int
) -> tuple[int, int]:
    """(true-negative blocks, healthy blocks) of the region specificity (module docstring)."""
    h, w = skin.shape
    gy, gx = h // size, w // size
    if gy == 0 or gx == 0:
        return 0, 0

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[: gy * size, : gx * size].reshape(gy, size, gx, size).mean(axis=(1, 3))

    healthy = (blocks(skin) >= 0.5) & (blocks(doctor) == 0)
    clean = blocks(pred > 0) == 0
    return int((healthy & clean).sum()), int(healthy.sum())


def photo_metrics(
    pred: np.ndarray,
    doctor: np.ndarray | None,
    skin: np.ndarray,
    size: int,
    px_area: float,
    iou: float = REGION_IOU,
) -> dict[str, Any]:
    """Pixel, region and burden metrics of one photo (areas in original-photo px).

    Args:
        pred: (H, W) predicted region labels; doctor: (H, W) bool or None; skin: (H, W) bool;
        size: block size of the region specificity; px_area: original px per working px;
        iou: the IoU a doctor region's match needs for it to be detected.
    """
    p = pred > 0
    area = np.bincount(pred.ravel(), minlength=int(pred.max()) + 1)[1:]
    floods = flood_regions(pred, skin)
    # the burden's denominator: skin, and the doctor's region the skin rule dropped
    base = skin | doctor if doctor is not None else skin
    base_px = max(int(base.sum()), 1)
    row: dict[str, Any] = {
        "pred_regions": int(pred.max()),
        "pred_floods": int(floods.sum()),
        "flooded": float(floods.any()),
        "largest_region_skin_pct": 100.0 * float(area.max(initial=0)) / max(int(skin.sum()), 1),
        "pred_area_px": float(p.sum() * px_area),
        "pred_burden_pct": 100.0 * float(p.sum()) / base_px,
    }
    if doctor is None:
        return row
    m = match_regions(pred, doctor, iou)
    inter, total = float((p & doctor).sum()), float(p.sum() + doctor.sum())
    tn, neg = healthy_blocks(skin, doctor, pred, size)
    off_skin = int((doctor & ~skin).sum())
    row |= {
        "dice": _ratio(2 * inter, total),
        "iou": _ratio(inter, total - inter),
        "region_iou_threshold": iou,
        "doctor_regions": len(m.doctor_found),
        "doctor_regions_detected": int(m.doctor_found.sum()),
        "doctor_regions_touched": int(m.doctor_touched.sum()),
        "doctor_regions_touched_by_flood": _touched_by(m, pred, floods),
        "pred_regions_tp": int(m.pred_tp.sum()),
        "pred_regions_fp": int((~m.pred_tp).sum()),
        "region_sensitivity": _ratio(m.doctor_found.sum(), len(m.doctor_found)),
        "region_sensitivity_any": _ratio(m.doctor_touched.sum(), len(m.doctor_found)),
        "region_precision": _ratio(m.pred_tp.sum(), len(m.pred_tp)),
        "region_precision_any": _ratio(m.pred_touches.sum(), len(m.pred_tp)),
        "healthy_blocks": neg,
        "region_specificity": _ratio(tn, neg),
        "doctor_area_px": float(doctor.sum() * px_area),
        "doctor_burden_pct": 100.0 * float(doctor.sum()) / base_px,
        "doctor_off_skin_px": float(off_skin * px_area),
        "doctor_off_skin_pct": 100.0 * _ratio(off_skin, int(doctor.sum())),
    }
    row["burden_error_pct"] = row["pred_burden_pct"] - row["doctor_burden_pct"]
    row["burden_abs_error_pct"] = abs(row["burden_error_pct"])
    return row


def _touched_by(m: Matching, pred: np.ndarray, regions: np.ndarray) -> int:
    """How many doctor regions a predicted region flagged in ``regions`` (n_pred,) touches."""
    hit = np.flatnonzero(regions) + 1
    if not len(hit):
        return 0
    touched = np.unique(m.doctor_labels[np.isin(pred, hit) & (m.doctor_labels > 0)])
    return len(touched)


def geojson(
    regions: dict[str, np.ndarray], prob: np.ndarray, classes: list[str], scale: float,
    tp: dict[str, np.ndarray] | None = None, floods: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """GeoJSON FeatureCollection of predicted regions in original-photo pixel coordinates.

    Args:
        regions: class -> (H, W) region labels; prob: (H, W, K) map; scale: working px per
        original px; tp: class -> (n,) true-positive flags, when a doctor's mask was given;
        floods: class -> (n,) flood flags.
    """
    feats = []
    for cls, labels in regions.items():
        k = classes.index(cls)
        for i in range(1, int(labels.max()) + 1):
            mask = labels == i
            rings = [[[x / scale, y / scale] for x, y in ring] for ring in outline(mask)]
            rings = sorted(rings, key=len, reverse=True)
            for ring in rings:
                ring.append(ring[0])
            props = {
                "class": cls, "region": i,
                "mean_probability": float(np.nanmean(prob[..., k][mask])),
                "area_px": float(mask.sum() / scale**2),
            }  # fmt: skip
            if tp is not None and cls in tp:
                props["matches_doctor"] = bool(tp[cls][i - 1])
            if floods is not None and cls in floods:
                props["flood"] = bool(floods[cls][i - 1])
            geom = {"type": "Polygon", "coordinates": rings[:1]}
            feats.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats}
