"""Test-retest agreement of `skintl compare` on PAD-UFES-20's repeat photos.

The shared PAD-UFES-20 subset photographs 15 ACK / SEK lesions twice (same patient_id and
lesion_id, two img_ids, no treatment in between), so their burden should not change. Each pair
(the lower img_id first) is registered and compared as `skintl compare` does; printed:

- registration: pairs registered or refused (and why), and the Dice of the two doctors' masks
  after registration against before it (the AFTER mask resized onto BEFORE's frame unwarped);
- with a bundle: the burden (% of the skin both photos share) of the prediction and of the
  doctors' masks, with the mean difference (after minus before), Bland-Altman 95% limits of
  agreement (mean +- 1.96 SD) and a 95% CI of the mean difference that resamples patients; over
  every registered pair, and over those whose two doctors' masks meet after registration (some
  pairs are overlapping views centred on two different lesions).

RUN_OR_BUNDLE is a bundle file, or a run directory: then each patient is scanned by the bundle of
the outer fold that held it out (``scan/bundles/<encoder>[-cells]/fold<k>.pt``, honest), or by
``scan/bundle.pt`` (flagged ``leak``) when its fold has none. Without it only the registration
part runs.

    python benchmarks/compare_retest.py [RUN_OR_BUNDLE] [--data DIR] [--out DIR] [--n-boot N]
        [--match-scale]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pad-ufes-20-masked"
TARGET = {"ACK": "AK", "SEK": "SK"}


def repeat_pairs(data: Path) -> pd.DataFrame:
    """One row per ACK / SEK lesion photographed twice: patient, lesion, class, the two photos
    and masks (ordered by img_id)."""
    m = pd.read_csv(data / "metadata.csv")
    m = m[m["diagnostic"].isin(list(TARGET))]
    m = m.assign(num=m["img_id"].str.extract(r"_(\d+)\.png$")[0].astype(int))
    rows = []
    for (pid, lid), g in m.sort_values("num").groupby(["patient_id", "lesion_id"]):
        if len(g) == 2:
            a, b = g.iloc[0], g.iloc[1]
            rows.append({"patient_id": pid, "lesion_id": lid, "diagnostic": a["diagnostic"],
                         "before": data / a["image"], "after": data / b["image"],
                         "mask_before": data / a["mask"],
                         "mask_after": data / b["mask"]})  # fmt: skip
    return pd.DataFrame(rows)


def registration_quality(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair: registered or why not, inliers, error, doctors' Dice after / before."""
    from skintl.scan.compare import dice, warp_into
    from skintl.scan.image import read_doctor_mask, read_photo, resize
    from skintl.scan.register import RegistrationError, register

    out = []
    for _, p in pairs.iterrows():
        b, a = read_photo(p["before"]), read_photo(p["after"])
        mb = read_doctor_mask(p["mask_before"], b.shape[:2])
        ma = read_doctor_mask(p["mask_after"], a.shape[:2])
        row: dict[str, Any] = {"patient_id": p["patient_id"], "lesion_id": p["lesion_id"],
                               "dice_unregistered": dice(mb, resize(ma, mb.shape))}  # fmt: skip
        try:
            reg = register(b, a)
        except RegistrationError as e:
            out.append({**row, "registered": False, "why": str(e)})
            continue
        warped = warp_into(ma, reg.matrix, mb.shape)
        out.append({**row, "registered": True, "why": "", "kind": reg.kind,
                    "inliers": reg.inliers, "error_px": reg.error_px, "zoom": reg.zoom,
                    "dice_registered": dice(mb, warped)})  # fmt: skip
    return pd.DataFrame(out)


def fold_bundles(run: Path, patients: list[str], out: Path) -> tuple[Path, dict[str, Path]]:
    """(scan/bundle.pt, patient -> the bundle of the outer fold that held the patient out).

    A fold the scan stage made no bundle for (none of its photos was scanned) gets one in
    ``out/bundles/``, fitted as the stage fits it, when the run's cached inputs are current (the
    run is only read); otherwise its patients fall back to scan/bundle.pt."""
    from skintl.scan.bundle import load_bundle

    full = run / "scan" / "bundle.pt"
    head = load_bundle(full).meta.get("head", "patch")
    folds = pd.read_parquet(run / "evaluation" / "folds.parquet")
    fold_of = folds.groupby(folds["patient_id"].astype(str))["fold"].first()
    by_patient = {}
    for pid in sorted(set(patients) & set(fold_of.index)):
        k = int(fold_of[pid])
        train = sorted(set(fold_of.index[fold_of != k]))
        made = _fold_bundle(run, head, k, train, out / "bundles")
        if made is not None:
            by_patient[pid] = made
    return full, by_patient


def _fold_bundle(run: Path, head: str, k: int, train: list[str], folder: Path) -> Path | None:
    """The run's bundle of fold ``k``, or one made in ``folder`` (None when it cannot be)."""
    from skintl.config import load_config
    from skintl.rundir import fingerprint_matches
    from skintl.scan.cell_export import make_cell_bundle, table_fingerprint

    cfg = load_config(run / "config.yaml")
    s = cfg.scan
    assert s is not None
    enc = s.encoder if head == "cells" else (s.patch_encoder or s.encoder)
    name = f"{enc}-cells" if head == "cells" else enc
    path = run / "scan" / "bundles" / name / f"fold{k}.pt"
    if path.is_file():
        return path
    mine = folder / f"{name}-fold{k}.pt"
    if mine.is_file():
        return mine
    if head != "cells":
        return None
    cells = run / "scan" / "cells" / enc / f"{s.layer}.json"
    if not fingerprint_matches(cells, table_fingerprint(cfg, run, enc, s.layer)):
        return None  # its cell table would be recomputed into the run: not ours to write
    folder.mkdir(parents=True, exist_ok=True)
    make_cell_bundle(run, enc, s.layer, s.classifier, mine, train, s.cells.threshold,
                     s.cells.inner_folds, s.cells.max_per_photo)  # fmt: skip
    return mine


def burdens(
    pairs: pd.DataFrame, target: str | Path, out: Path, match_scale: bool = False
) -> pd.DataFrame:
    """Compare every pair with its bundle; one row per pair (refused pairs: a reason)."""
    from skintl.scan.bundle import load_bundle
    from skintl.scan.image import ScanError
    from skintl.scan.run import ScanOptions
    from skintl.scan.visits import Visit, compare_visits

    target = Path(target)
    pids = sorted(pairs["patient_id"].astype(str).unique())
    full, per_patient = (target, {}) if target.is_file() else fold_bundles(target, pids, out)
    rows = []
    for _, p in pairs.iterrows():
        path = per_patient.get(str(p["patient_id"]), full)
        bundle = load_bundle(path)
        opts = ScanOptions(target=TARGET[p["diagnostic"]])
        visits = [Visit(p["before"], p["mask_before"], p["patient_id"]),
                  Visit(p["after"], p["mask_after"], p["patient_id"])]  # fmt: skip
        base = {"patient_id": p["patient_id"], "lesion_id": p["lesion_id"],
                "bundle": path.name, "leak": path == full and not target.is_file()}  # fmt: skip
        try:
            where = out / f"{p['patient_id']}_{p['lesion_id']}"
            t = compare_visits(bundle, visits, where, opts, match_scale=match_scale)
        except ScanError as e:
            rows.append({**base, "why": str(e)})
            continue
        rows.append({**base, "why": "", **t.iloc[0].to_dict()})
    return pd.DataFrame(rows)


def agreement(t: pd.DataFrame, prefix: str, n_boot: int, seed: int = 0) -> dict[str, float]:
    """Mean difference (after - before), Bland-Altman limits and a patient-bootstrap CI."""
    d = (t[f"{prefix}_burden_after_pct"] - t[f"{prefix}_burden_before_pct"]).to_numpy()
    pids = t["patient_id"].to_numpy()
    groups = [np.flatnonzero(pids == p) for p in np.unique(pids)]
    rng = np.random.default_rng(seed)
    boots = [d[np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])]
             .mean() for _ in range(n_boot)]  # fmt: skip
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    return {"n_pairs": len(d), "n_patients": len(groups),
            "mean_burden_pct": float(t[[f"{prefix}_burden_before_pct",
                                        f"{prefix}_burden_after_pct"]].to_numpy().mean()),
            "mean_difference": float(d.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5)), "loa_low": float(d.mean() - 1.96 * sd),
            "loa_high": float(d.mean() + 1.96 * sd),
            "mean_abs_difference": float(np.abs(d).mean())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", nargs="?", metavar="RUN_OR_BUNDLE")
    ap.add_argument("--data", default=str(DATA), help="the PAD-UFES-20 masked subset")
    ap.add_argument("--out", help="keep every pair's compare outputs here")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--match-scale", action="store_true", help="as `skintl compare --match-scale`")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    pairs = repeat_pairs(Path(args.data))
    print(f"{len(pairs)} lesions photographed twice, {pairs['patient_id'].nunique()} patients")
    reg = registration_quality(pairs)
    ok = reg[reg["registered"]]
    print(f"\nregistered {len(ok)} of {len(reg)} pairs; refused:")
    for _, r in reg[~reg["registered"]].iterrows():
        print(f"  {r['patient_id']} lesion {r['lesion_id']}: {r['why']}")
    print(ok[["patient_id", "lesion_id", "kind", "inliers", "error_px", "zoom",
              "dice_unregistered", "dice_registered"]].to_string(index=False,
                                                                 float_format="%.3f"))  # fmt: skip
    print(
        f"doctors' Dice of the registered pairs: before registration "
        f"{ok['dice_unregistered'].mean():.3f}, after {ok['dice_registered'].mean():.3f} "
        f"(median {ok['dice_unregistered'].median():.3f} -> {ok['dice_registered'].median():.3f})"
    )
    if not args.target:
        return
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="compare-retest-"))
    t = burdens(pairs, args.target, out, args.match_scale)
    done = t[t["why"] == ""]
    if "leak" in done and done["leak"].any():
        print(f"\n{int(done['leak'].sum())} pairs scanned by scan/bundle.pt (their fold had no "
              "bundle): not an honest evaluation")  # fmt: skip
    cols = ["patient_id", "lesion_id", "target_class", "bundle", "pred_burden_before_pct",
            "pred_burden_after_pct", "doctor_burden_before_pct", "doctor_burden_after_pct",
            "doctor_dice_registered"]  # fmt: skip
    print(done[cols].to_string(index=False, float_format="%.2f"))
    # pairs whose two doctors' masks meet on the shared skin: the same lesion in both photos
    same = done[done["doctor_dice_registered"] > 0]
    table = pd.DataFrame([{"pairs": which, "burden": name, **agreement(t, prefix, args.n_boot)}
                          for which, t in (("registered", done), ("masks meet", same))
                          for prefix, name in (("pred", "predicted"),
                                               ("doctor", "doctors'"))])  # fmt: skip
    print("\ntest-retest agreement of the burden (% of shared skin, after minus before):")
    print(table.to_string(index=False, float_format="%.2f"))
    print(f"\nper-pair outputs in {out}")


if __name__ == "__main__":
    main()
