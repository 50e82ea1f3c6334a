"""The scan stage's follow-up (``scan.visits``): lesion burden change per patient between visits.

The photos the stage scans are grouped into series: a patient's photos (of one site, with
``site_column``) ordered by ``column``. Each later photo of a series is compared with the first
(:mod:`skintl.scan.visits`) by the bundle of the outer fold that held the patient out, in the
first scan mode, against the doctor's masks of the study. Refused before any scanning: a site
whose photos belong to two patients, and two photos of a series at one visit (their order is
unknown). A pair that cannot be registered is recorded with its reason, the others go on.
Files: ``scan/visits/<patient>[_<site>]/`` (what `skintl compare` writes) and
``scan/visits.csv`` (one row per compared or refused pair).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from skintl.config import ScanConfig, StudyConfig
from skintl.io import write_text
from skintl.scan.image import ScanError
from skintl.scan.visits import Visit, check_visits, order_key

log = logging.getLogger(__name__)


def visit_series(photos: pd.DataFrame, column: str, site: str | None) -> list[pd.DataFrame]:
    """The series of two or more photos, each in visit order (module docstring).

    Args:
        photos: one row per photo with ``photo``, ``patient_id`` and the columns named.
    """
    for col in (column, site):
        if col is not None and col not in photos:
            raise ScanError(f"scan.visits names column {col!r}, which the photos lack")
    if site is not None:
        owners = photos.groupby(photos[site].astype(str))["patient_id"].unique()
        shared = owners[owners.map(len) > 1]
        if len(shared):
            name, pids = shared.index[0], ", ".join(sorted(map(str, shared.iloc[0])))
            raise ScanError(f"scan.visits: {site} {name!r} has photos of patients {pids}; a "
                            "series of visits is one patient's (fix the metadata)")  # fmt: skip
    keys = ["patient_id"] + ([site] if site else [])
    series = []
    for _, g in photos.groupby(keys, sort=True):
        if len(g) < 2:
            continue
        labels = g[column].astype(str).tolist()
        ordered = sorted(range(len(g)), key=lambda i: order_key(labels)[i])
        g = g.iloc[ordered]
        check_visits([Visit(Path(r["photo"]), None, str(r["patient_id"]), str(r[column]))
                      for _, r in g.iterrows()])  # fmt: skip
        series.append(g)
    return series


def series_name(g: pd.DataFrame, site: str | None) -> str:
    first = g.iloc[0]
    return str(first["patient_id"]) + (f"_{first[site]}" if site else "")


def run_visits(cfg: StudyConfig, run_dir: Path, s: ScanConfig, out: Path) -> pd.DataFrame:
    """Compare every series (module docstring); writes and returns ``visits.csv``'s table."""
    from skintl.scan.bundle import load_bundle
    from skintl.scan.run import ScanOptions
    from skintl.scan.stage import _doctor, photos_to_scan
    from skintl.scan.visits import compare_visits

    v = s.visits
    assert v is not None
    mode = s.scan_modes(cfg.features)[0]
    enc = s.encoder_for(mode)
    folder = out / "bundles" / (f"{enc}-cells" if mode == "cells" else enc)
    folds = pd.read_parquet(run_dir / "evaluation" / "folds.parquet")
    fold_of = folds.groupby(folds["patient_id"].astype(str))["fold"].first()
    rows: list[dict[str, Any]] = []
    for g in visit_series(photos_to_scan(cfg, run_dir), v.column, v.site_column):
        name, pid = series_name(g, v.site_column), str(g["patient_id"].iloc[0])
        if pid not in fold_of.index:
            log.warning("visits of %s: the patient has no fold (no patches); not compared", name)
            continue
        bundle = load_bundle(folder / f"fold{fold_of[pid]}.pt")
        doctors = [_doctor(cfg, run_dir, r) for _, r in g.iterrows()]
        target = doctors[0][0]
        visits = [Visit(Path(r["photo"]), None, pid, str(r[v.column]),
                        d[1] if d[0] == target else None)
                  for (_, r), d in zip(g.iterrows(), doctors, strict=True)]  # fmt: skip
        opts = ScanOptions(mode=mode, stride=s.stride, device=s.device, target=target,
                           region_iou=s.region_iou, cell_paint=s.cells.paint)  # fmt: skip
        try:
            table = compare_visits(bundle, visits, out / "visits" / name, opts, v.detector,
                                   v.min_overlap)  # fmt: skip
        except ScanError as e:
            log.warning("visits of %s not compared: %s", name, e)
            rows.append({"series": name, "patient_id": pid, "refused": str(e)})
            continue
        for r in table.to_dict("records"):
            rows.append({"series": name, "fold": int(fold_of[pid]), "refused": "",
                         **{str(k): x for k, x in r.items()}})  # fmt: skip
    result = pd.DataFrame(rows)
    write_text(result.to_csv(index=False), out / "visits.csv")
    log.info(
        "visits: %d pairs of %d series", len(result), result["series"].nunique() if rows else 0
    )
    return result
