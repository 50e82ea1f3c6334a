"""``skintl compare``: photos of one patient's skin at several visits, each later visit
registered onto the first (the baseline) and its lesion burden compared with it.

Every photo is scanned as ``skintl scan`` scans it (:func:`skintl.scan.run.scan_maps`: the same
reader, EXIF rule, scale, modes and thresholds) and its scan files are written as that command
writes them (``match_scale``: later photos at the first one's scale times the registration's zoom,
:func:`compare_visits`). Per later visit ``k``: ``<first>_to_<k>_side_by_side.png`` (both overlays
in the first photo's frame), ``<first>_to_<k>_change.png`` (the change map,
:mod:`skintl.scan.compare`) and a row of ``compare.csv`` / ``compare.json``. Every pair is
registered, and refused when it cannot be, before anything is scanned or written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skintl.io import write_text
from skintl.scan.bundle import Bundle
from skintl.scan.compare import (
    CHANGE_CLASSES,
    MIN_OVERLAP,
    burden_change,
    change_regions,
    dice,
    footprint,
    frame_matrix,
    warp_into,
)
from skintl.scan.image import ScanError, photo_date, read_photo, resize
from skintl.scan.register import Registration, RegistrationError, register
from skintl.scan.run import (
    PhotoMaps,
    ScanOptions,
    scan_maps,
    scan_row,
    working_scale,
    write_scan,
)

log = logging.getLogger(__name__)


@dataclass
class Visit:
    """One photo of the series: its file, doctor's mask (a file, or an (H, W) bool array at
    the photo's size), patient and visit label (or None)."""

    photo: Path
    mask: Path | None = None
    patient_id: str | None = None
    visit: str | None = None
    doctor_mask: np.ndarray | None = None


def order_key(values: list[str]) -> list[Any]:
    """Sort keys of visit labels: numbers when every label is one, else the text."""
    try:
        return [float(v) for v in values]
    except ValueError:
        return list(values)  # dates as YYYY-MM-DD or EXIF's YYYY:MM:DD sort as text


def check_visits(visits: list[Visit]) -> None:
    """Refuse photos of two patients, or visits not in strictly increasing order, where
    patient ids and visit labels (numbers or dates) are known."""
    if len(visits) < 2:
        raise ScanError("compare needs at least two photos: BEFORE and AFTER")
    pids = {v.patient_id for v in visits if v.patient_id is not None}
    if len(pids) > 1:
        raise ScanError(f"the photos are of {len(pids)} patients ({', '.join(sorted(pids))}); "
                        "compare photos of one patient")  # fmt: skip
    labels = [v.visit for v in visits]
    if any(v is None for v in labels):
        return
    keys = order_key([str(v) for v in labels])
    for i in range(1, len(keys)):
        if not keys[i - 1] < keys[i]:
            raise ScanError(
                f"{visits[i].photo}: visit {labels[i]} does not come after {labels[i - 1]} "
                f"({visits[i - 1].photo}); give the photos in visit order, earliest first"
            )


def with_exif_dates(visits: list[Visit]) -> list[Visit]:
    """The visits, labelled by their EXIF dates when none has a label and every photo has one."""
    if any(v.visit is not None for v in visits):
        return visits
    dates = [photo_date(v.photo) for v in visits]
    if any(d is None for d in dates):
        return visits
    return [replace(v, visit=d) for v, d in zip(visits, dates, strict=True)]


def register_series(photos: list[np.ndarray], names: list[Path], detector: str) -> list:
    """Each later photo registered onto the first; a pair that cannot be is refused."""
    regs = []
    for k in range(1, len(photos)):
        try:
            regs.append(register(photos[0], photos[k], detector))
        except RegistrationError as e:
            raise ScanError(f"{names[k]} onto {names[0]}: {e}; nothing was written") from None
    return regs


def compare_visits(
    bundle: Bundle,
    visits: list[Visit],
    out_dir: Path,
    opts: ScanOptions,
    detector: str = "sift",
    min_overlap: float = MIN_OVERLAP,
    match_scale: bool = False,
) -> pd.DataFrame:
    """Register, scan and compare the visits (module docstring); returns ``compare.csv``.

    Every photo is scaled by the bundle's rule (or ``opts``); with ``match_scale`` each later
    photo is scanned at the first one's scale times the registration's zoom instead, the same
    skin at the same pixel size (on PAD-UFES-20's repeat photos this widened the burden's limits
    of agreement: the bundle was fitted on photos framed at its short side).
    """
    visits = with_exif_dates(visits)
    check_visits(visits)
    stems = [v.photo.stem for v in visits]
    if len(set(stems)) != len(stems):
        raise ScanError("two photos share a file name; their outputs would overwrite each other")
    opts = replace(opts, mode=bundle.scan_mode(opts.mode))
    photos = [read_photo(v.photo, opts.max_pixels) for v in visits]
    regs = register_series(photos, [v.photo for v in visits], detector)
    first = working_scale(bundle, photos[0].shape, opts)
    del photos
    each = [opts] + [replace(opts, scale=first * r.zoom, short_side=None) if match_scale else opts
                     for r in regs]  # fmt: skip
    maps = [scan_maps(bundle, v.photo, o, v.mask, v.patient_id, v.doctor_mask)
            for v, o in zip(visits, each, strict=True)]  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    scans = []
    for v, m in zip(visits, maps, strict=True):
        write_scan(bundle, v.photo, out_dir, opts, m)
        scans.append(scan_row(bundle, v.photo, opts, m, v.patient_id))
    write_text(pd.DataFrame(scans).to_csv(index=False), out_dir / "scan_metrics.csv")
    rows = []
    for k in range(1, len(visits)):
        row, pics = compare_pair(maps[0], maps[k], regs[k - 1], opts.target, min_overlap)
        pair = f"{stems[0]}_to_{stems[k]}"
        for name, img in pics.items():
            _save(img, out_dir / f"{pair}_{name}.png")
        rows.append({"before": str(visits[0].photo), "after": str(visits[k].photo),
                     "patient_id": visits[0].patient_id, "visit_before": visits[0].visit,
                     "visit_after": visits[k].visit, "mode": opts.mode,
                     "target_class": opts.target, "scale_before": maps[0].scale,
                     "scale_after": maps[k].scale, **row})  # fmt: skip
    write_text(json.dumps(rows, indent=1, default=_jsonable), out_dir / "compare.json")
    table = pd.DataFrame(rows).drop(columns=["matrix"])
    write_text(table.to_csv(index=False), out_dir / "compare.csv")
    return table


def _jsonable(o: Any) -> Any:
    return o.tolist() if isinstance(o, np.ndarray) else float(o)


def _save(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    from skintl.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def compare_pair(
    before: PhotoMaps, after: PhotoMaps, reg: Registration, target: str, min_overlap: float
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One pair's row (registration, skin overlap, burdens, change counts) and its pictures."""
    shape = before.skin.shape
    m = frame_matrix(reg.matrix, after.scale, before.scale)
    inside = footprint(m, after.skin.shape, shape)
    skin_b = before.skin | before.doctor if before.doctor is not None else before.skin
    skin_a = after.skin | after.doctor if after.doctor is not None else after.skin
    skin_a = warp_into(skin_a, m, shape)
    shared = skin_b & skin_a & inside
    pred_b = before.regions[target] > 0
    pred_a = warp_into(after.regions[target] > 0, m, shape)
    changes = change_regions(pred_b, pred_a, shared, min_overlap)
    row: dict[str, Any] = {
        "registration": reg.kind, "matches": reg.matches, "inliers": reg.inliers,
        "reprojection_error_px": reg.error_px, "zoom": reg.zoom,
        "skin_overlap_dice": dice(skin_b & inside, skin_a),
        "shared_skin_pct": 100.0 * float(shared.sum()) / max(int(skin_b.sum()), 1),
        "shared_skin_px": float(shared.sum()) / before.scale**2,
        **burden_change(pred_b, pred_a, shared), **changes.counts(), "matrix": reg.matrix,
    }  # fmt: skip
    if before.doctor is not None and after.doctor is not None:
        doc_a = warp_into(after.doctor, m, shape)
        row |= burden_change(before.doctor, doc_a, shared, "doctor")
        row["doctor_dice_registered"] = dice(before.doctor & inside, doc_a)
        row["doctor_dice_unregistered"] = dice(before.doctor, resize(after.doctor, shape))
    return row, pair_pictures(before, after, m, target, pred_a, shared, changes.pixels)


def pair_pictures(
    before: PhotoMaps, after: PhotoMaps, m: np.ndarray, target: str, pred_a: np.ndarray,
    shared: np.ndarray, pixels: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The side-by-side overlays (AFTER warped into BEFORE's frame) and the change map.

    Args:
        m: (3, 3) AFTER working px -> BEFORE working px; pred_a: (H, W) AFTER's lesions warped.
    """
    from scipy import ndimage
    from skimage.transform import ProjectiveTransform, warp

    from skintl.scan.draw import TRUE_POSITIVE, change_map, legend, overlay
    from skintl.scan.run import _display, _up

    disp, f = _display(before.photo, before.skin.shape)
    # AFTER's original photo straight into the display frame (original px -> display px)
    inverse = ProjectiveTransform(np.linalg.inv(frame_matrix(m, 1 / after.scale, f)))
    warped = warp(after.photo, inverse, output_shape=disp.shape[:2], order=1, cval=0.5)
    warped = (warped * 255).round().astype(np.uint8)
    w, h = max(2, f), disp.shape[0]
    labels_a, _ = ndimage.label(pred_a, structure=np.ones((3, 3)))
    ob = overlay(disp, _up(before.regions[target], f), None, None, None, width=w)[:h]
    oa = overlay(warped, _up(labels_a, f), None, None, None, width=w)[:h]
    ob = np.concatenate([ob, legend(ob.shape[1], ((f"before: {target}", TRUE_POSITIVE),))])
    oa = np.concatenate([oa, legend(oa.shape[1], ((f"after, registered: {target}",
                                                    TRUE_POSITIVE),))])  # fmt: skip
    gap = np.full((ob.shape[0], 8, 3), 255, np.uint8)
    change = change_map(disp, _up(pixels, f), _up(shared, f), CHANGE_CLASSES)
    return {"side_by_side": np.concatenate([ob, gap, oa], axis=1), "change": change}
