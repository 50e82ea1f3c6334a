"""A synthetic follow-up with a known answer: three visits of one patient's skin.

Visit 1 is a photo of :mod:`skintl.data.synthetic` with four AK and one SK. By visit 2 a
treatment has cleared two AK and shrunk two (to :data:`SHRINK` of their area), the SK persists
and one new AK has appeared; visit 3 shows the same lesions as visit 2. The skin under the
lesions (tone, pores, freckles, naevi) is the same at every visit; lesion texture, hair, light
and noise are drawn anew, as in a new photo. Visits 2 and 3 are photographed from elsewhere: a
known projective transform (:data:`TRANSFORMS`, rotation, zoom, shift and a slight tilt) maps
visit-1 pixels to theirs, and what falls outside visit 1's frame is a blue-grey background.

Layout written by :func:`generate_followup`::

    out_dir/<patient>_visit<k>.png        (H, W, 3) uint8
    out_dir/masks/<patient>_visit<k>.png  (H, W) uint8: 0 skin, 1 AK, 2 SK
    out_dir/visits.csv                    image, mask, patient_id, visit
    out_dir/truth.json                    transforms, lesion changes, AK areas (written last)
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from skintl.data.synthetic import (
    LABEL_AK,
    LABEL_SK,
    Patient,
    blob_field,
    paint_ak,
    paint_hair,
    paint_sk,
    photograph,
    place_lesions,
    render_layers,
    skin_layers,
    write_png,
)
from skintl.io import atomic_path, write_text

#: visit-1 lesions: four AK and one SK
LABELS = (LABEL_AK, LABEL_AK, LABEL_AK, LABEL_AK, LABEL_SK)
#: what becomes of each visit-1 lesion by visit 2 (and stays so at visit 3); one new AK appears
CHANGES = ("cleared", "shrunk", "cleared", "shrunk", "persisting")
#: a shrunk lesion keeps about this share of its area
SHRINK = 0.4
#: (rotation in degrees, zoom, shift (x, y) as a share of the side, tilt (x, y)) per later visit
TRANSFORMS = {2: (12.0, 1.12, (0.04, -0.03), (1.5e-4, -1.0e-4)),
              3: (-9.0, 0.9, (-0.03, 0.05), (-1.0e-4, 1.5e-4))}  # fmt: skip
BACKGROUND = (70, 80, 100)  # blue-grey cloth: not skin under the skin rule


def transform_matrix(size: int, visit: int) -> np.ndarray:
    """(3, 3) projective matrix mapping visit-1 pixels (x, y) to visit ``visit``'s pixels,
    at a square photo of side ``size`` (rotation and zoom about the centre)."""
    if visit == 1:
        return np.eye(3)
    deg, zoom, (sx, sy), (px, py) = TRANSFORMS[visit]
    c = (size - 1) / 2
    a = np.deg2rad(deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) * [
        [zoom], [zoom], [1]
    ]  # fmt: skip
    shift = np.array([[1, 0, c + sx * size], [0, 1, c + sy * size], [0, 0, 1]])
    centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [px * 256 / size, py * 256 / size, 1]])
    m = shift @ tilt @ rot @ centre
    return m / m[2, 2]


def _warp(arr: np.ndarray, matrix: np.ndarray, fill: tuple[int, ...] | int) -> np.ndarray:
    """``arr`` (visit-1 frame) as seen through ``matrix`` (visit-1 px -> new px)."""
    from skimage.transform import ProjectiveTransform, warp

    inverse = ProjectiveTransform(np.linalg.inv(matrix))  # new px -> visit-1 px
    order = 0 if arr.ndim == 2 else 1
    chans = [arr] if arr.ndim == 2 else [arr[..., i] for i in range(arr.shape[2])]
    fills = [fill] if arr.ndim == 2 else list(fill)  # type: ignore[arg-type]
    out = [warp(c.astype(np.float64), inverse, order=order, cval=-1.0, preserve_range=True)
           for c in chans]  # fmt: skip
    out = [np.where(o < 0, f, o) for o, f in zip(out, fills, strict=True)]
    stacked = out[0] if arr.ndim == 2 else np.stack(out, axis=2)
    return np.clip(np.round(stacked), 0, 255).astype(np.uint8)


def _new_lesion(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Blob field of a new AK a gap away from every visit-1 lesion and the photo's edge."""
    size = mask.shape[0]
    s = size / 256
    free = ndimage.distance_transform_edt(mask == 0)
    for attempt in range(200):
        r = 22 * s * 0.98**attempt
        center = rng.uniform(1.2 * r, size - 1.2 * r, 2)
        rho = blob_field(rng, mask.shape, (center[0], center[1]), r)
        if (rho < 1).sum() > 20 and free[rho < 1.0].min() > 10 * s:
            return rho
    raise RuntimeError("no room for the new lesion")


def _lesions(visit: int, fields: list[tuple[int, np.ndarray]], new: np.ndarray) -> list:
    """(label, blob field) of the lesions present at ``visit`` (visit-1 frame)."""
    if visit == 1:
        return list(fields)
    out = []
    for (label, rho), change in zip(fields, CHANGES, strict=True):
        if change == "shrunk":  # rho grows with the distance from the centre
            out.append((label, rho / np.sqrt(SHRINK)))
        elif change != "cleared":
            out.append((label, rho))
    return [*out, (LABEL_AK, new)]


def make_visits(
    patient: Patient, size: int, seed: int, n_visits: int = 3
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(photo, mask, mask in the visit-1 frame) of each visit (module docstring).

    Returns:
        per visit: (size, size, 3) uint8 photo, (size, size) uint8 mask (0 skin, 1 AK, 2 SK)
        and the same mask before the visit's transform (visit-1 frame).
    """
    rng = np.random.default_rng([seed % 2**64, 7919])
    base = skin_layers(rng, size, patient.melanin, patient.blood)
    mask1, fields = place_lesions(rng, size, LABELS, 0.22)
    new = _new_lesion(rng, mask1)
    out = []
    for v in range(1, n_visits + 1):
        vrng = np.random.default_rng([seed % 2**64, 7919, v])
        layers = copy.deepcopy(base)
        mask = np.zeros((size, size), np.uint8)
        for label, rho in _lesions(v, fields, new):
            (paint_ak if label == LABEL_AK else paint_sk)(vrng, layers, rho)
            mask[rho < 1.0] = label
        paint_hair(vrng, layers, int(vrng.integers(0, 4)))
        photo = photograph(vrng, render_layers(layers))
        m = transform_matrix(size, v)
        out.append((_warp(photo, m, BACKGROUND), _warp(mask, m, 0), mask))
    return out


def generate_followup(
    out_dir: str | Path, patient: Patient, size: int = 256, seed: int = 0
) -> Path:
    """Write the visits of ``patient`` (module docstring); returns ``truth.json``'s path."""
    out = Path(out_dir)
    visits = make_visits(patient, size, seed)
    rows, areas = [], {}
    for v, (photo, mask, frame1) in enumerate(visits, start=1):
        name = f"{patient.patient_id}_visit{v}.png"
        write_png(out / name, photo)
        write_png(out / "masks" / name, mask)
        rows.append((name, f"masks/{name}", patient.patient_id, v))
        areas[v] = int((frame1 == LABEL_AK).sum())
    with atomic_path(out / "visits.csv") as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([("image", "mask", "patient_id", "visit"),
                                                      *rows])  # fmt: skip
    truth: dict[str, Any] = {
        "patient_id": patient.patient_id,
        "transforms": {str(v): transform_matrix(size, v).tolist() for v in (2, 3)},
        "transform_convention": "visit-1 pixel (x, y, 1) -> visit-k pixel, x right, y down",
        "lesions": [{"label": "AK" if lab == LABEL_AK else "SK", "visit2": ch}
                    for lab, ch in zip(LABELS, CHANGES, strict=True)] + [
            {"label": "AK", "visit2": "new"}],
        "shrink": SHRINK,
        "ak_area_px_visit1_frame": areas,
    }  # fmt: skip
    path = out / "truth.json"
    write_text(json.dumps(truth, indent=1), path)
    return path
