"""Argument parsing of ``skintl bundle`` and ``skintl scan`` (the work is in scan/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_bundle(args: argparse.Namespace) -> int:
    from skintl.scan.cell_export import make_cell_bundle
    from skintl.scan.export import make_bundle

    run, out = Path(args.run_dir), Path(args.output)
    if args.head == "cells":
        meta = make_cell_bundle(run, args.encoder, args.layer.split(","), args.classifier, out,
                                threshold=args.cell_threshold, inner_folds=args.inner_folds,
                                max_per_photo=args.max_cells_per_photo,
                                exclude_patients=args.exclude_patients)  # fmt: skip
    else:
        meta = make_bundle(run, args.encoder, args.layer, args.classifier, out,
                           args.exclude_patients)  # fmt: skip
    print(
        f"wrote {args.output}: {meta['arch']} {meta['layer']} ({meta['feature_mode']} features), "
        f"{meta['classifier']} on {len(meta['training_patients'])} patients, photo short side "
        f"{meta['photo_short_side']} px"
        + (f", thresholds {meta['cell_thresholds']}" if meta.get("cell_thresholds") else "")
    )
    if meta.get("warnings"):
        print(f"warning: the classifier's refit gave {len(meta['warnings'])} warning(s), "
              "recorded in the bundle (e.g. " + meta["warnings"][0] + ")")  # fmt: skip
    return 0


def _options(args: argparse.Namespace, patient_ids: list | None = None) -> Any:
    """The ScanOptions of the options `scan` and `compare` share."""
    from skintl.scan.image import ScanError
    from skintl.scan.regions import REGION_IOU
    from skintl.scan.run import ScanOptions

    if args.region_iou is not None and not 0 < args.region_iou <= 1:
        raise ScanError(f"--region-iou {args.region_iou}: give an IoU in (0, 1]")
    return ScanOptions(
        mode=args.mode, stride=args.stride, short_side=args.short_side, scale=args.scale,
        device=args.device, max_pixels=args.max_pixels or None, target=args.target_class,
        threshold=args.threshold, min_area=args.min_area, skin=args.skin,
        mask_value=args.doctor_mask_value,
        region_iou=REGION_IOU if args.region_iou is None else args.region_iou,
        patient_ids=list(patient_ids or []), cell_paint=args.cell_paint,
    )  # fmt: skip


def cmd_scan(args: argparse.Namespace) -> int:
    from skintl.scan.bundle import load_bundle
    from skintl.scan.image import ScanError
    from skintl.scan.run import scan_photos

    _check_positionals(args.bundle, args.images)
    if args.patient_id and len(args.patient_id) != len(args.images):
        raise ScanError(f"{len(args.patient_id)} --patient-id for {len(args.images)} photos")
    opts = _options(args, args.patient_id)
    bundle = load_bundle(args.bundle)
    masks = [Path(m) for m in args.doctor_mask] if args.doctor_mask else None
    table = scan_photos(bundle, [Path(p) for p in args.images], Path(args.output), opts, masks)
    cols = [c for c in ("dice", "region_sensitivity", "region_specificity") if c in table]
    if cols:
        print(table[cols].mean().to_string(float_format=lambda v: f"{v:.3f}"))
    failed = table[table["error"] != ""]
    print(f"scans of {len(table) - len(failed)} photos in {args.output} "
          f"(open {args.output}/index.html)")  # fmt: skip
    if len(failed):
        print(f"{len(failed)} photo(s) not scanned, listed in index.html and scan_metrics.csv "
              f"(column error): {', '.join(Path(p).name for p in failed['photo'])}")  # fmt: skip
        return 1
    return 0


USAGE = "skintl scan BUNDLE PHOTO [PHOTO ...] -o OUT"


def _check_positionals(bundle: str, images: list[str]) -> None:
    """The bundle first, then at least one photo: say which one is missing."""
    from skintl.data.readers import IMAGE_SUFFIXES
    from skintl.scan.image import ScanError

    if Path(bundle).suffix.lower() in IMAGE_SUFFIXES:
        raise ScanError(
            f"{bundle} looks like a photo, but the first argument is the bundle (the file made "
            f"by `skintl bundle`): {USAGE}"
        )
    if not images:
        raise ScanError(f"no photos to scan: give them after the bundle {bundle}: {USAGE}")


def _per_photo(values: list[str] | None, n: int, flag: str) -> list[str | None]:
    """One value per photo: none, one for all, or one each."""
    from skintl.scan.image import ScanError

    if not values:
        return [None] * n
    if len(values) == 1:
        return [values[0]] * n
    if len(values) != n:
        raise ScanError(f"{len(values)} {flag} for {n} photos: give one for all, or one each")
    return list(values)


def cmd_compare(args: argparse.Namespace) -> int:
    from skintl.scan.bundle import load_bundle
    from skintl.scan.image import ScanError
    from skintl.scan.visits import Visit, compare_visits

    photos = [Path(p) for p in args.photos]
    if len(photos) < 2:
        raise ScanError("compare needs at least two photos: BEFORE AFTER [LATER ...]")
    after = args.doctor_mask_after or []
    if after and len(after) != len(photos) - 1:
        raise ScanError(f"{len(after)} --doctor-mask-after for {len(photos) - 1} later photos: "
                        "give one per later photo, in order")  # fmt: skip
    masks = [args.doctor_mask_before, *after] if after or args.doctor_mask_before else []
    masks = [Path(m) if m else None for m in masks] or [None] * len(photos)
    pids = _per_photo(args.patient_id, len(photos), "--patient-id")
    labels = _per_photo(args.visit, len(photos), "--visit") if args.visit else [None] * len(photos)
    if args.visit and len(args.visit) != len(photos):
        raise ScanError(f"{len(args.visit)} --visit for {len(photos)} photos: give one each")
    visits = [Visit(p, m, i, v) for p, m, i, v in zip(photos, masks, pids, labels, strict=True)]
    if not 0 <= args.min_overlap < 1:
        raise ScanError(f"--min-overlap {args.min_overlap}: give a share in [0, 1)")
    opts = _options(args)
    bundle = load_bundle(args.bundle)
    table = compare_visits(bundle, visits, Path(args.output), opts, args.detector,
                           args.min_overlap, args.match_scale)  # fmt: skip
    for _, r in table.iterrows():
        print(f"{Path(r['after']).name} onto {Path(r['before']).name}: {r['registration']} "
              f"({r['inliers']} of {r['matches']} matches, {r['reprojection_error_px']:.2f} px), "
              f"{r['target_class']} burden {r['pred_burden_before_pct']:.1f}% -> "
              f"{r['pred_burden_after_pct']:.1f}% of the shared skin "
              f"({r['pred_burden_change_pct']:+.1f} points, "
              f"{r['pred_burden_relative_change_pct']:+.0f}%); regions: "
              f"{r['regions_persisting']} persisting, {r['regions_cleared']} cleared, "
              f"{r['regions_new']} new")  # fmt: skip
    print(f"comparison in {args.output} (compare.csv, *_change.png)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from skintl.names import SCAN_CLASSIFIERS

    b = sub.add_parser("bundle", help="export a scan bundle (encoder + refitted classifier)")
    b.add_argument("run_dir", help="run directory of a finished `skintl study`")
    b.add_argument("--encoder", required=True, help="encoder name from the study config")
    b.add_argument(
        "--layer",
        required=True,
        help="layer whose features the classifier uses "
        "(--head cells: one or several taps, comma-separated, stacked on the finest "
        "tap's grid, e.g. blocks.3,blocks.5)",
    )
    b.add_argument("--classifier", required=True, choices=SCAN_CLASSIFIERS)
    b.add_argument(
        "--exclude-patients",
        nargs="+",
        default=[],
        metavar="ID",
        help="patients left out of the refit (to scan them honestly later)",
    )
    b.add_argument(
        "--head",
        choices=["patch", "cells"],
        default="patch",
        help="patch: the classifier of the run's cached features; cells: a classifier of every "
        "skin cell of the training photos' feature maps (scans in cells mode)",
    )
    b.add_argument(
        "--cell-threshold",
        choices=["none", "dice", "burden"],
        default="none",
        help="cells: each lesion class's threshold, chosen on an inner patient split of the "
        "training patients for the best Dice or burden (default none: argmax)",
    )
    b.add_argument("--inner-folds", type=int, default=3, help="cells: patient groups (3)")
    b.add_argument(
        "--max-cells-per-photo", type=int, help="cells: fit on a uniform sample of this many"
    )
    b.add_argument("-o", "--output", required=True, help="bundle file to write")
    b.set_defaults(func=cmd_bundle)

    s = sub.add_parser("scan", help="lesion maps, regions and overlays of whole photos")
    s.add_argument("bundle", help="file made by `skintl bundle` (first)")
    # "*", not "+": a missing photo or bundle gets skintl's own message, which says which
    s.add_argument("images", nargs="*", help="photos to scan")
    s.add_argument(
        "--doctor-mask",
        nargs="+",
        metavar="MASK",
        help="the doctor's outline of each photo (nonzero = lesion), in order",
    )
    s.add_argument(
        "--patient-id",
        nargs="+",
        metavar="ID",
        help="patient of each photo (warns when the bundle was trained on it)",
    )
    _add_scan_options(s)
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.set_defaults(func=cmd_scan)
    _add_compare(sub)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from skintl.names import DETECTORS, MIN_OVERLAP

    c = sub.add_parser("compare", help="lesion burden and its change between visits")
    c.add_argument("bundle", help="file made by `skintl bundle`")
    c.add_argument("photos", nargs="+", metavar="PHOTO",
                   help="BEFORE AFTER [LATER ...]: one patient's photos in visit order; each "
                   "later photo is registered onto the first")  # fmt: skip
    c.add_argument("--doctor-mask-before", metavar="MASK", help="the doctor's outline of BEFORE")
    c.add_argument("--doctor-mask-after", nargs="+", metavar="MASK",
                   help="the doctor's outline of each later photo, in order")  # fmt: skip
    c.add_argument("--patient-id", nargs="+", metavar="ID",
                   help="patient of the photos (one, or one per photo: two patients are "
                   "refused)")  # fmt: skip
    c.add_argument("--visit", nargs="+", metavar="V",
                   help="visit of each photo (numbers or YYYY-MM-DD dates; photos out of order "
                   "are refused; default: their EXIF dates, when every photo has one)")  # fmt: skip
    c.add_argument("--detector", choices=DETECTORS, default="sift",
                   help="registration keypoints (sift; orb is faster)")  # fmt: skip
    c.add_argument("--min-overlap", type=float, default=MIN_OVERLAP,
                   help=f"share of a region the other visit must cover for it to persist "
                   f"(default {MIN_OVERLAP})")  # fmt: skip
    c.add_argument("--match-scale", action="store_true",
                   help="scan later photos at the first's scale times the registration's zoom "
                   "(the same skin at the same px size; default: every photo by the bundle's "
                   "rule, as `skintl scan`)")  # fmt: skip
    _add_scan_options(c)
    c.add_argument("-o", "--output", required=True, help="output folder")
    c.set_defaults(func=cmd_compare)


def _add_scan_options(s: argparse.ArgumentParser) -> None:
    """The options `scan` and `compare` share."""
    from skintl.names import DEFAULT_MAX_PIXELS
    from skintl.names import SCAN_MODES as MODES

    s.add_argument(
        "--doctor-mask-value",
        type=int,
        metavar="V",
        help="only mask pixels equal to V are the doctor's region (multi-class masks)",
    )
    s.add_argument(
        "--mode",
        choices=MODES,
        help="window placement (default: the bundle's, dense for a bundle of dense features, "
        "exact for one of patch features; a mode the bundle was not trained for is refused)",
    )
    s.add_argument("--stride", type=int, help="grid stride in px (default: patch size / 5)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--short-side", type=int, help="bring each photo's short side to PX first")
    g.add_argument(
        "--scale",
        type=float,
        help="scale photos by F (default: to the bundle's training photo scale)",
    )
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--target-class", default="AK", help="class the doctor's masks outline")
    s.add_argument("--threshold", type=float, help="probability threshold (default: argmax)")
    s.add_argument("--min-area", type=int, help="smallest region in px (default: half a window)")
    s.add_argument(
        "--region-iou",
        type=float,
        metavar="T",
        help="a doctor region is detected when the predicted regions touching it reach IoU T "
        "with it (default 0.2; any overlap is reported beside it)",
    )
    s.add_argument(
        "--cell-paint",
        choices=["block", "bilinear"],
        default="block",
        help="cells mode: each pixel its cell's probabilities (block, default: the grid the "
        "thresholds were chosen on) or interpolated between the cell centres (bilinear)",
    )
    s.add_argument(
        "--skin",
        choices=["rule", "all"],
        default="rule",
        help="where windows go: the documented skin rule, or every pixel",
    )
    s.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="decompression-bomb limit in pixels (0: no limit)",
    )
