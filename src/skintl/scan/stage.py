"""The ``scan`` stage: a bundle for `skintl scan`, and an honest whole-photo evaluation.

For every outer fold of ``evaluation/folds.parquet``, a bundle refitted on that fold's training
patients scans the photos of its held-out patients, so no photo is scanned by a classifier that
saw its patient (nor by a cell head whose thresholds did: they are chosen on the fold's
training patients). Mode ``cells`` is the cell head (:mod:`skintl.scan.cells`), compared photo
by photo with dense, the patch head on the same feature map. Files (all under ``scan/``):
``bundle.pt`` (every patient), ``bundles/<encoder>[-cells]/fold<k>.pt``, ``cells/`` (the cell
table), ``<mode>/`` (per-photo outputs, ``scan_metrics.csv``, ``index.html``), ``photos.csv``
(every photo and mode), ``summary.csv`` (means and medians over photos with patient-bootstrap
95% CIs) and ``mode_differences.csv`` (each mode minus exact, and cells minus dense, photo by
photo: :mod:`skintl.scan.summary`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skintl.config import ScanConfig, StudyConfig
from skintl.io import write_json, write_text
from skintl.labels import HEALTHY
from skintl.rundir import StaleError, fingerprint, fingerprint_matches, invalidate
from skintl.scan.image import ScanError

log = logging.getLogger(__name__)


def photos_to_scan(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Manifest rows to scan with columns ``photo``, ``mask``, ``patient_id``, ``labels`` (and
    ``scan.visits``' columns); refuses columns the manifest lacks and missing photos first."""
    from skintl.data.check import scan_input_problems

    s = cfg.scan
    assert s is not None
    m = pd.read_parquet(run_dir / "manifest.parquet")
    problems = scan_input_problems(cfg, m)
    if problems:
        raise ScanError(f"scan stage: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                         if len(problems) > 1 else ""))  # fmt: skip
    for col, values in s.include.items():
        m = m[m[col].astype(str).isin(values)]
    mask: pd.Series | None
    if s.image_column is None:
        photo, mask = m["image_path"], m["annotation"]
    else:
        root = cfg.data.root or run_dir
        keep = m[s.image_column].notna() & (m[s.image_column].astype(str) != "")
        m = m[keep]
        photo = m[s.image_column].map(lambda p: str(root / str(p)))
        mask = m[s.mask_column].map(lambda p: str(root / str(p))) if s.mask_column else None
    cols = [c for c in (s.visits.column, s.visits.site_column) if c] if s.visits else []
    extra = {c: m[c] for c in cols}
    return pd.DataFrame({"photo": photo, "mask": mask, "patient_id": m["patient_id"].astype(str),
                         "labels": m["labels"], **extra}).reset_index(drop=True)  # fmt: skip


def _doctor(cfg: StudyConfig, run_dir: Path, row: Any) -> tuple[str, np.ndarray | None]:
    """(target class, doctor's bool mask of it) of one photo, from the study's mask rule."""
    from skintl.data.sources import effective_data_config, lesion_label_map, read_mask

    if row["mask"] is None or pd.isna(row["mask"]):
        return cfg.classes[0], None
    data = effective_data_config(cfg, run_dir)
    lab = lesion_label_map(read_mask(Path(row["mask"])), data, row["labels"], cfg.classes)
    present = [cfg.classes[i] for i in np.unique(lab[lab >= 0])]
    lesion = [c for c in cfg.classes if c != HEALTHY]
    target = next((c for c in lesion if c in present), lesion[0])  # AK first when both
    return target, lab == cfg.classes.index(target)


def _bundle(
    cfg: StudyConfig,
    run_dir: Path,
    encoder: str,
    path: Path,
    only: list[str] | None,
    head: str = "patch",
) -> Path:
    """``path``, (re)made when missing or made from other inputs: a bundle of ``head``
    (patch: the cached features' classifier; cells: the cell head) fitted on ``only``."""
    from skintl.scan.cell_export import make_cell_bundle, table_fingerprint
    from skintl.scan.cells import THRESHOLD_RULE
    from skintl.scan.export import make_bundle

    s = cfg.scan
    assert s is not None
    rec = (run_dir / "features" / encoder / f"{s.layer}.json").read_text()
    key: dict[str, Any] = {"features": rec, "clf": s.classifier, "patients": only,
                           "evaluation": cfg.evaluation.model_dump(mode="json")}  # fmt: skip
    taps = s.cells.taps(s.layer)
    if head == "cells":  # what the cell table is computed from, and the head's settings
        cells = s.cells.model_dump(mode="json", exclude={"paint"})  # painting is the scan's
        key |= {"head": head, "cells": cells, "rule": THRESHOLD_RULE,
                "table": table_fingerprint(cfg, run_dir, encoder, taps)}  # fmt: skip
    fp = fingerprint(key)
    marker = path.with_suffix(".json")
    if not (path.is_file() and fingerprint_matches(marker, fp)):
        if head == "cells":
            c = s.cells
            make_cell_bundle(run_dir, encoder, taps, s.classifier, path, only, c.threshold,
                             c.inner_folds, c.max_per_photo)  # fmt: skip
        else:
            make_bundle(run_dir, encoder, s.layer, s.classifier, path, only_patients=only)
        write_text(f'{{"fingerprint": "{fp}"}}', marker)
    return path


def run_scan(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame | None:
    """Export the bundle and scan every fold's held-out photos (``scan:`` of the config)."""
    s = cfg.scan
    if s is None:
        return None
    out = run_dir / "scan"
    if s.export_bundle:
        _bundle(cfg, run_dir, s.encoder, out / "bundle.pt", None, s.head)
        log.info("scan bundle: %s", out / "bundle.pt")
    if not s.scan_modes(cfg.features):
        if s.visits is not None:
            raise ScanError("scan.visits compares the fold bundles' scans: give scan.modes")
        return None
    if s.visits is not None:  # refuse series of two patients or unordered visits up front
        from skintl.scan.visit_stage import visit_series

        visit_series(photos_to_scan(cfg, run_dir), s.visits.column, s.visits.site_column)
    invalidate(out / "meta.json")
    table = evaluate_photos(cfg, run_dir, s, out)
    write_text(table.to_csv(index=False), out / "photos.csv")
    summary = write_summaries(table, out, s.n_boot, cfg.seed)
    if s.visits is not None:
        from skintl.scan.visit_stage import run_visits

        run_visits(cfg, run_dir, s, out)
    inputs = scan_inputs(cfg, run_dir)
    write_json({"fingerprint": fingerprint(inputs), "inputs": inputs}, out / "meta.json")
    return summary


def scan_inputs(cfg: StudyConfig, run_dir: Path) -> dict[str, Any]:
    """What the whole-photo evaluation depends on: the scan and evaluation settings, the
    features of the scanning encoders (checked against the config) and the outer folds."""
    from skintl.data.stage import check_patches
    from skintl.features.stage import feature_inputs

    s = cfg.scan
    assert s is not None
    patches_fp = check_patches(cfg, run_dir)
    encoders = sorted({s.encoder, s.patch_encoder or s.encoder})
    folds = pd.read_parquet(run_dir / "evaluation" / "folds.parquet")["fold"]
    return {
        "scan": s.model_dump(mode="json"),
        "evaluation": cfg.evaluation.model_dump(mode="json"),
        "features": {e: fingerprint(feature_inputs(cfg, run_dir, e, patches_fp)) for e in encoders},
        "folds": fingerprint(folds.tolist()),
    }


def check_scan(cfg: StudyConfig, run_dir: Path) -> None:
    """Refuse whole-photo results (``scan/summary.csv``, which the report shows) that were not
    made from the config as it is now (run after :func:`check_evaluation`).

    Raises:
        StaleError: naming ``scan/`` and `skintl study`, which runs the scan stage.
    """
    out = run_dir / "scan"
    if not (out / "summary.csv").is_file():
        return
    if cfg.scan is None or not cfg.scan.scan_modes(cfg.features):
        raise StaleError(f"{out}: whole-photo results of a config without scan.modes; remove "
                         "that folder or rerun `skintl study CONFIG`")  # fmt: skip
    if not fingerprint_matches(out / "meta.json", fingerprint(scan_inputs(cfg, run_dir))):
        raise StaleError(f"{out}: not scanned with the config as it is now; rerun `skintl study "
                         "CONFIG`, which runs the scan stage")  # fmt: skip


def write_summaries(table: pd.DataFrame, out: Path, n_boot: int, seed: int) -> pd.DataFrame:
    """``summary.csv`` (means per mode) and ``mode_differences.csv`` (paired, against exact)
    in ``out`` from the photos table; returns the summary."""
    from skintl.scan.summary import paired_differences, reference_mode, summarise

    summary = summarise(table, n_boot, seed)
    write_text(summary.to_csv(index=False), out / "summary.csv")
    modes = list(dict.fromkeys(table["mode"]))
    if len(modes) > 1:
        ref = reference_mode(modes)
        diffs = paired_differences(table, ref, n_boot, seed)
        if {"cells", "dense"} <= set(modes) and ref != "dense":  # the two heads, one feature map
            heads = table[table["mode"].isin(["cells", "dense"])]
            diffs = pd.concat([diffs, paired_differences(heads, "dense", n_boot, seed)])
        write_text(diffs.to_csv(index=False), out / "mode_differences.csv")
    return summary


def evaluate_photos(cfg: StudyConfig, run_dir: Path, s: ScanConfig, out: Path) -> pd.DataFrame:
    from skintl.scan.bundle import load_bundle
    from skintl.scan.run import ScanOptions, scan_html, scan_photo

    folds = pd.read_parquet(run_dir / "evaluation" / "folds.parquet")
    fold_of = folds.groupby(folds["patient_id"].astype(str))["fold"].first()
    photos = photos_to_scan(cfg, run_dir)
    unseen = sorted(set(photos["patient_id"]) - set(fold_of.index))
    if unseen:
        log.warning("%d photos' patients have no patches, hence no fold: not scanned", len(unseen))
    photos = photos[photos["patient_id"].isin(fold_of.index)]
    photos = photos.assign(fold=photos["patient_id"].map(fold_of).astype(int))
    rows: list[dict[str, Any]] = []
    used: dict[str, Any] = {}
    for k, group in photos.groupby("fold"):
        train = sorted(set(fold_of.index[fold_of != k]))
        for mode in s.scan_modes(cfg.features):
            enc, head = s.encoder_for(mode), "cells" if mode == "cells" else "patch"
            path = out / "bundles" / (f"{enc}-cells" if head == "cells" else enc) / f"fold{k}.pt"
            bundle = used[mode] = load_bundle(_bundle(cfg, run_dir, enc, path, train, head))
            (out / mode).mkdir(parents=True, exist_ok=True)
            for _, r in group.iterrows():
                target, doctor = _doctor(cfg, run_dir, r)
                opts = ScanOptions(mode=mode, stride=s.stride, device=s.device, target=target,
                                   region_iou=s.region_iou, cell_paint=s.cells.paint)  # fmt: skip
                row = scan_photo(bundle, Path(r["photo"]), out / mode, opts,
                                 patient=r["patient_id"], doctor_mask=doctor)  # fmt: skip
                rows.append({**row, "fold": int(str(k)), "labels": r["labels"]})
            log.info("scan fold %s, %s: %d photos", k, mode, len(group))
    table = pd.DataFrame(rows)
    for name, g in table.groupby("mode"):
        write_text(g.to_csv(index=False), out / str(name) / "scan_metrics.csv")
        write_text(scan_html(g, used[str(name)]), out / str(name) / "index.html")
    return table


def summary_text(summary: pd.DataFrame) -> str:
    """One line per (mode, class, metric): mean [95% CI] (n photos)."""
    return "\n".join(
        f"{r['mode']:>10} {r['target_class']:>4} {r['metric']:>20}: {r['mean']:.3f} "
        f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] (n={r['n_photos']})"
        for _, r in summary.iterrows()
    )
