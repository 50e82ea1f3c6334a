"""Lesion regions from probability maps, their outlines, and metrics against the doctor's.

Region matching follows Spyridonos et al. 2017: a doctor region is *detected* when a predicted
region overlaps it; a predicted region is a *false positive* when it overlaps no doctor region.
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
from skimage.measure import find_contours

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
    contours = find_contours(np.pad(mask.astype(np.float32), 1), 0.5)
    return [[(float(c - 1), float(r - 1)) for r, c in cont] for cont in contours if len(cont) > 2]


@dataclass
class Matching:
    """Which predicted regions are true positives and which doctor regions were found."""

    pred_tp: np.ndarray  # (n_pred,) bool, region i + 1
    doctor_found: np.ndarray  # (n_doctor,) bool
    doctor_labels: np.ndarray  # (H, W) int


def match_regions(pred: np.ndarray, doctor: np.ndarray) -> Matching:
    """Match predicted region labels (H, W) against the doctor's bool mask (H, W)."""
    doc, n_doc = ndimage.label(doctor, structure=np.ones((3, 3)))
    n_pred = int(pred.max())
    both = (pred > 0) & (doc > 0)
    tp = np.zeros(n_pred, bool)
    tp[np.unique(pred[both]) - 1] = True
    found = np.zeros(n_doc, bool)
    found[np.unique(doc[both]) - 1] = True
    return Matching(tp, found, doc)


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
    pred: np.ndarray, doctor: np.ndarray | None, skin: np.ndarray, size: int, px_area: float
) -> dict[str, Any]:
    """Pixel, region and burden metrics of one photo (areas in original-photo px).

    Args:
        pred: (H, W) predicted region labels; doctor: (H, W) bool or None; skin: (H, W) bool;
        size: block size of the region specificity; px_area: original px per working px.
    """
    skin_px = max(int(skin.sum()), 1)
    p = pred > 0
    row: dict[str, Any] = {
        "pred_regions": int(pred.max()),
        "pred_area_px": float(p.sum() * px_area),
        "pred_burden_pct": 100.0 * float(p.sum()) / skin_px,
    }
    if doctor is None:
        return row
    m = match_regions(pred, doctor)
    inter, total = float((p & doctor).sum()), float(p.sum() + doctor.sum())
    tn, neg = healthy_blocks(skin, doctor, pred, size)
    row |= {
        "dice": _ratio(2 * inter, total),
        "iou": _ratio(inter, total - inter),
        "doctor_regions": len(m.doctor_found),
        "doctor_regions_detected": int(m.doctor_found.sum()),
        "pred_regions_tp": int(m.pred_tp.sum()),
        "pred_regions_fp": int((~m.pred_tp).sum()),
        "region_sensitivity": _ratio(m.doctor_found.sum(), len(m.doctor_found)),
        "region_precision": _ratio(m.pred_tp.sum(), len(m.pred_tp)),
        "healthy_blocks": neg,
        "region_specificity": _ratio(tn, neg),
        "doctor_area_px": float(doctor.sum() * px_area),
        "doctor_burden_pct": 100.0 * float(doctor.sum()) / skin_px,
    }
    row["burden_error_pct"] = row["pred_burden_pct"] - row["doctor_burden_pct"]
    row["burden_abs_error_pct"] = abs(row["burden_error_pct"])
    return row


def geojson(
    regions: dict[str, np.ndarray], prob: np.ndarray, classes: list[str], scale: float,
    tp: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """GeoJSON FeatureCollection of predicted regions in original-photo pixel coordinates.

    Args:
        regions: class -> (H, W) region labels; prob: (H, W, K) map; scale: working px per
        original px; tp: class -> (n,) true-positive flags, when a doctor's mask was given.
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
            geom = {"type": "Polygon", "coordinates": rings[:1]}
            feats.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats}
