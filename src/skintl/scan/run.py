"""``skintl scan``: photos in, maps, regions, overlays, GeoJSON and metrics out.

Per photo ``<stem>``: ``<stem>_overlay.png`` (outlines in the original colours, legend),
``<stem>_heatmap.png`` (probability of the target class), ``<stem>_prob_<class>.png`` (8-bit
probability at the photo's own resolution, 0 off the skin), ``<stem>_regions.geojson`` and a
row of ``scan_metrics.csv``. ``index.html`` shows every overlay.

Every photo and doctor's mask is checked to exist before anything is written; a photo that
cannot be decoded is listed (column ``error``, and on the page) while the others are scanned.
A photo with almost no skin (a chart, a slide) is flagged (``no_skin``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from skintl.io import atomic_path, write_text
from skintl.labels import AK, HEALTHY
from skintl.scan.bundle import Bundle
from skintl.scan.draw import heatmap, overlay
from skintl.scan.image import DEFAULT_MAX_PIXELS, ScanError, read_doctor_mask, read_photo, resize
from skintl.scan.regions import (
    REGION_IOU,
    RegionRule,
    class_regions,
    flood_regions,
    geojson,
    match_regions,
    photo_metrics,
)
from skintl.scan.scanner import cell_probabilities, window_probabilities
from skintl.scan.skin import skin_mask
from skintl.scan.windows import Windows, grid_windows, paint, paint_cells, superpixel_windows

log = logging.getLogger(__name__)

#: below this share of skin (% of the photo) a scan is flagged: the skin rule found almost
#: nothing to classify (a chart, a slide, a photo that is not of skin)
NO_SKIN_PCT = 1.0


@dataclass
class ScanOptions:
    """What ``skintl scan`` does; None picks the bundle's default."""

    mode: str | None = None  # None: the bundle's (dense, or exact for a patch bundle)
    stride: int | None = None  # default: patch size / 5 (10 px for 50 px patches)
    short_side: int | None = None  # bring the photo's short side to this many px
    scale: float | None = None  # or scale it by this factor (default: the bundle's scale)
    device: str = "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    target: str = AK  # the class the doctor's mask outlines
    threshold: float | None = None  # None: argmax
    min_area: int | None = None  # px at the bundle's scale; default half a window
    radius: int | None = None  # morphology disk; default patch size / 10
    tile: int = 1024  # dense mode: tile core in px (memory grows with its square)
    skin: str = "rule"  # "rule" (skintl.scan.skin) or "all"
    mask_value: int | None = None  # doctor's masks: only this pixel value (None: nonzero)
    region_iou: float = REGION_IOU  # a doctor region is detected at this IoU with its match
    cell_paint: str = "block"  # cells mode: "block" (each pixel its cell's) or "bilinear"
    patient_ids: list[str | None] = field(default_factory=list)


def working_scale(bundle: Bundle, shape: tuple[int, ...], opts: ScanOptions) -> float:
    short = min(shape[:2])
    if opts.scale is not None:
        return float(opts.scale)
    if opts.short_side is not None:
        return opts.short_side / short
    target = bundle.meta.get("photo_short_side")
    return float(target) / short if target else 1.0


def leak_warning(bundle: Bundle, path: Path, patient: str | None) -> str | None:
    """Why ``path`` may belong to the bundle's training set, or None."""
    from skintl.rundir import sha256_file

    if patient is not None and str(patient) in set(bundle.meta.get("training_patients", [])):
        return f"patient {patient} is in the bundle's training set"
    photos = bundle.meta.get("training_photos", [])
    by_name = {p["name"]: p for p in photos}
    if path.name in by_name:
        return f"a training photo has the same name (patient {by_name[path.name]['patient_id']})"
    sha = sha256_file(path)
    hit = next((p for p in photos if p["sha256"] == sha), None)
    if hit is not None:
        return f"it is a training photo (patient {hit['patient_id']})"
    return None


def place_windows(bundle: Bundle, work: np.ndarray, skin: np.ndarray, opts: ScanOptions) -> Windows:
    if opts.mode == "superpixel":
        return superpixel_windows(work, skin, bundle.size, bundle.stride)
    stride = opts.stride or max(1, bundle.size // 5)
    return grid_windows(skin, bundle.size, stride, bundle.stride)


def probability_map(
    bundle: Bundle, work: np.ndarray, opts: ScanOptions
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) photo at the bundle's scale -> ((H, W, K) map, NaN off the skin; skin mask)."""
    if opts.skin == "all":
        skin = np.ones(work.shape[:2], bool)
    else:
        skin = skin_mask(work, bundle.size)
    mode = bundle.scan_mode(opts.mode)
    if mode == "cells":  # each pixel painted from its feature-map cells' probabilities
        cells = cell_probabilities(bundle, work, opts.device, tile=opts.tile)
        return paint_cells(cells, bundle.cell_stride, skin, opts.cell_paint), skin
    win = place_windows(bundle, work, skin, opts)
    padded = np.pad(work, ((win.pad, win.pad), (win.pad, win.pad), (0, 0)), mode="reflect")
    probs = window_probabilities(bundle, padded, win, mode, opts.device, tile=opts.tile)
    return paint(win.owner, probs), skin


def _save_png(arr: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _display(photo: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The photo at a viewable size (short side >= 512 px, never above the original)."""
    f = max(1, min(math.ceil(512 / min(shape)), math.floor(min(photo.shape[:2]) / min(shape))))
    return resize(photo, (shape[0] * f, shape[1] * f)), f


def _up(labels: np.ndarray, f: int) -> np.ndarray:
    return np.repeat(np.repeat(labels, f, axis=0), f, axis=1) if f > 1 else labels


@dataclass
class PhotoMaps:
    """One photo's maps at the bundle's scale (``scale`` working px per original px).

    Attributes:
        photo: (H0, W0, 3) uint8 as read; prob: (H, W, K) map, NaN off the skin; skin: (H, W)
        bool; regions: class -> (H, W) region labels; doctor: (H, W) bool or None.
    """

    photo: np.ndarray
    scale: float
    prob: np.ndarray
    skin: np.ndarray
    regions: dict[str, np.ndarray]
    doctor: np.ndarray | None
    thresholds: dict[str, float | None]
    leak: str | None


def scan_maps(
    bundle: Bundle,
    path: Path,
    opts: ScanOptions,
    mask_path: Path | None = None,
    patient: str | None = None,
    doctor_mask: np.ndarray | None = None,
) -> PhotoMaps:
    """Read and scan one photo (its mode already resolved in ``opts``); nothing is written."""
    photo = read_photo(path, opts.max_pixels)
    leak = leak_warning(bundle, path, patient)
    if leak:
        log.warning("%s: %s; its scan is not an honest evaluation", path, leak)
    s = working_scale(bundle, photo.shape, opts)
    shape = (max(1, round(photo.shape[0] * s)), max(1, round(photo.shape[1] * s)))
    work = resize(photo, shape)
    if mask_path is not None:
        doctor_mask = read_doctor_mask(mask_path, photo.shape[:2], opts.mask_value)
    doctor = None
    if doctor_mask is not None:
        if doctor_mask.shape != photo.shape[:2]:
            raise ScanError(f"{path}: the doctor's mask is not the photo's size")
        doctor = resize(doctor_mask, shape, nearest=True)
    prob, skin = probability_map(bundle, work, opts)
    classes = bundle.head.classes
    if opts.target not in classes:
        raise ScanError(f"--target-class {opts.target!r} is not a class of the bundle {classes}")
    size = bundle.size
    # a cell head's thresholds were chosen on its training patients; --threshold overrides them
    thresholds = {c: opts.threshold if opts.threshold is not None else bundle.thresholds.get(c)
                  for c in classes if c != HEALTHY}  # fmt: skip
    rules = {c: RegionRule(opts.min_area or size * size // 2, opts.radius or max(1, size // 10),
                           t) for c, t in thresholds.items()}  # fmt: skip
    regions = {c: class_regions(prob, classes, c, rule) for c, rule in rules.items()}
    return PhotoMaps(photo, s, prob, skin, regions, doctor, thresholds, leak)


def scan_photo(
    bundle: Bundle,
    path: Path,
    out_dir: Path,
    opts: ScanOptions,
    mask_path: Path | None = None,
    patient: str | None = None,
    doctor_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scan one photo, write its files into ``out_dir`` and return its metrics row.

    The doctor's outline comes from ``mask_path`` (nonzero = lesion) or ``doctor_mask``
    ((H, W) bool at the photo's resolution). A mode the bundle was not trained for is refused
    before the photo is read."""
    opts = replace(opts, mode=bundle.scan_mode(opts.mode))
    maps = scan_maps(bundle, path, opts, mask_path, patient, doctor_mask)
    write_scan(bundle, path, out_dir, opts, maps)
    return scan_row(bundle, path, opts, maps, patient)


def scan_row(
    bundle: Bundle, path: Path, opts: ScanOptions, maps: PhotoMaps, patient: str | None
) -> dict[str, Any]:
    """The photo's row of ``scan_metrics.csv``."""
    s, pred = maps.scale, maps.regions[opts.target]
    skin_pct = 100.0 * maps.skin.mean()
    if skin_pct < NO_SKIN_PCT:
        log.warning("%s: skin in %.2f%% of the photo; nothing much was scanned (is it a photo "
                    "of skin?)", path, skin_pct)  # fmt: skip
    return {"photo": str(path), "patient_id": patient, "mode": opts.mode, "scale": s,
            "target_class": opts.target, "threshold": maps.thresholds[opts.target],
            "leak_warning": maps.leak or "", "skin_pct": skin_pct,
            "no_skin": bool(skin_pct < NO_SKIN_PCT),
            **photo_metrics(pred, maps.doctor, maps.skin, bundle.size, 1.0 / s**2,
                            opts.region_iou)}  # fmt: skip


def write_scan(
    bundle: Bundle, path: Path, out_dir: Path, opts: ScanOptions, maps: PhotoMaps
) -> None:
    """The photo's overlay, heat-map, probability PNGs and GeoJSON in ``out_dir``."""
    photo, prob, regions, doctor = maps.photo, maps.prob, maps.regions, maps.doctor
    pred, classes = regions[opts.target], bundle.head.classes
    stem = out_dir / path.stem
    m = match_regions(pred, doctor, opts.region_iou) if doctor is not None else None
    floods = {c: flood_regions(r, maps.skin) for c, r in regions.items()}
    disp, f = _display(photo, pred.shape)
    img = overlay(disp, _up(pred, f), m.pred_tp if m else None,
                  _up(m.doctor_labels, f) if m else None, m.doctor_found if m else None,
                  width=max(2, f), pred_flood=floods[opts.target])  # fmt: skip
    _save_png(img, Path(f"{stem}_overlay.png"))
    k = classes.index(opts.target)
    heat = heatmap(disp, _up(prob[..., k], f), f"probability of {opts.target}")
    _save_png(heat, Path(f"{stem}_heatmap.png"))
    for j, c in enumerate(classes):
        p8 = (np.nan_to_num(prob[..., j], nan=0.0) * 255).round().astype(np.uint8)
        _save_png(resize(p8, photo.shape[:2]), Path(f"{stem}_prob_{c}.png"))
    tp = {opts.target: m.pred_tp} if m else None
    gj = geojson(regions, prob, classes, maps.scale, tp, floods)
    write_text(json.dumps(gj), Path(f"{stem}_regions.geojson"))


def scan_photos(
    bundle: Bundle,
    photos: list[Path],
    out_dir: Path,
    opts: ScanOptions,
    masks: list[Path] | None = None,
) -> pd.DataFrame:
    """Scan every photo; writes ``scan_metrics.csv`` and ``index.html`` in ``out_dir``.

    Raises:
        ScanError: before anything is written, for missing photos or masks (all named) and
            options that cannot work; a photo that fails later gets a row with its ``error``.
    """
    from skintl.progress import progress

    check_inputs(bundle, photos, opts, masks)
    opts = replace(opts, mode=bundle.scan_mode(opts.mode))
    out_dir.mkdir(parents=True, exist_ok=True)
    pids = opts.patient_ids or [None] * len(photos)
    rows: list[dict[str, Any]] = []
    for i, path in enumerate(progress(photos, f"scan ({opts.mode})", "photo")):
        try:
            rows.append(
                scan_photo(bundle, path, out_dir, opts, masks[i] if masks else None, pids[i])
            )
        except ScanError as e:  # an undecodable photo or mask: the others are still scanned
            log.error("%s", e)
            rows.append({"photo": str(path), "patient_id": pids[i], "error": str(e)})
    errors = [r["error"] for r in rows if "error" in r]
    if len(errors) == len(photos):  # nothing scanned: an error, not a page of failures
        more = f" (and {len(errors) - 1} more photos failed)" if len(errors) > 1 else ""
        raise ScanError(errors[0] + more)
    table = pd.DataFrame(rows)
    if "error" not in table:
        table["error"] = ""
    table["error"] = table["error"].fillna("")
    write_text(table.to_csv(index=False), out_dir / "scan_metrics.csv")
    write_text(scan_html(table, bundle), out_dir / "index.html")
    return table


def check_inputs(
    bundle: Bundle, photos: list[Path], opts: ScanOptions, masks: list[Path] | None
) -> None:
    """Everything a batch scan can check before it writes: files exist, one mask per photo,
    distinct file names, a target class of the bundle."""
    if not photos:
        raise ScanError("no photos to scan")
    if masks and len(masks) != len(photos):
        raise ScanError(f"{len(masks)} --doctor-mask files for {len(photos)} photos: give one "
                        "mask per photo, in the same order")  # fmt: skip
    missing = [str(p) for p in [*photos, *(masks or [])] if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ScanError(f"{len(missing)} file(s) not found, nothing scanned: "
                        f"{', '.join(missing[:5])}{more}")  # fmt: skip
    stems = [p.stem for p in photos]
    if len(set(stems)) != len(stems):
        raise ScanError("two photos share a file name; their outputs would overwrite each other")
    if opts.target not in bundle.head.classes:
        raise ScanError(f"--target-class {opts.target!r} is not a class of the bundle "
                        f"{bundle.head.classes}")  # fmt: skip
    bundle.scan_mode(opts.mode)  # a mode the bundle was not trained for


def scan_html(table: pd.DataFrame, bundle: Bundle) -> str:
    """A page of every overlay and heat-map with its metrics (the report's style), best Dice
    first (photos without a doctor's mask last); each section names its target class."""
    from jinja2 import Environment, PackageLoader

    # file names, ids and labels come from outside: always escaped (the template is .html.j2,
    # which select_autoescape's default extensions miss)
    env = Environment(loader=PackageLoader("skintl", "report/templates"), autoescape=True)
    cols = [c for c in ("dice", "iou", "region_sensitivity", "region_sensitivity_any",
                        "region_specificity", "pred_regions", "doctor_regions", "pred_floods",
                        "pred_burden_pct", "doctor_burden_pct",
                        "doctor_off_skin_pct") if c in table]  # fmt: skip
    failed = table[table["error"] != ""] if "error" in table else table.iloc[:0]
    table = table.drop(failed.index)
    if "dice" in table:
        table = table.sort_values("dice", ascending=False, na_position="last", kind="stable")
    items = [
        {"stem": Path(r["photo"]).stem, "name": Path(r["photo"]).name, "leak": r["leak_warning"],
         "target": r["target_class"], "flood": bool(r.get("pred_floods", 0)),
         "no_skin": bool(r.get("no_skin", False)), "skin_pct": f"{r['skin_pct']:.2f}",
         "patient": None if pd.isna(r.get("patient_id")) else r["patient_id"],
         "metrics": {c: (f"{r[c]:.3f}" if isinstance(r[c], float) else r[c]) for c in cols}}
        for _, r in table.iterrows()
    ]  # fmt: skip
    errors = [{"name": Path(r["photo"]).name, "error": r["error"]} for _, r in failed.iterrows()]
    m = bundle.meta
    title = f"Scans: {m.get('arch')} {m.get('layer')} {m.get('classifier')} ({m.get('study')})"
    iou = table["region_iou_threshold"].iloc[0] if "region_iou_threshold" in table else None
    return env.get_template("scan.html.j2").render(
        title=title, items=items, meta=m, iou=iou, errors=errors, no_skin_pct=NO_SKIN_PCT
    )
