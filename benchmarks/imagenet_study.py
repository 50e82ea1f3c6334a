"""The thesis's table on real data: pre-training x layer on PAD-UFES-20, and its tests.

Reads a finished run of ``configs/pad-ufes-imagenet.yaml`` and prints:

1. balanced accuracy and macro AUC [95% CIs, patient bootstrap] of every encoder x tap for one
   classifier (the thesis's table, rows = pre-training, columns = layer);
2. the best cell of every ImageNet-weighted encoder against colour + LBP (RBF SVM): paired
   Wilcoxon signed-rank tests over the 23 folds on balanced accuracy, overall and on the photos
   without pen ink (labelled by eye), Holm-corrected over every comparison printed;
3. whether in-domain self-supervision adds to the ImageNet weights: the best MoCo / SimCLR cell
   minus the best ImageNet cell, balanced accuracy with a paired patient-bootstrap 95% CI (both
   cells scored on the same resampled patients).

The best cell is chosen on the same test folds it is scored on (as the report's best cells),
which favours it slightly; the paired tests compare it with one fixed baseline.

    python benchmarks/imagenet_study.py /work/runs/pad-ufes-imagenet [--classifier logreg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from skintl.evaluation.stats import (
    balanced_accuracy,
    bootstrap_ci,
    group_resamples,
    macro_auc,
    paired_test,
)

BASELINE = ("colour_lbp", "handcrafted", "svm_rbf")


def predictions(run: Path, encoder: str, layer: str, clf: str) -> pd.DataFrame:
    pred = pd.read_parquet(run / "evaluation" / encoder / layer / clf / "predictions.parquet")
    return pred.sort_values("patch").reset_index(drop=True)


def cells(run: Path) -> list[tuple[str, str, str]]:
    found = sorted(run.glob("evaluation/*/*/*/predictions.parquet"))
    return [tuple(p.parts[-4:-1]) for p in found]  # type: ignore[misc]


def ink_free_patches(run: Path, column: str = "ink_by_eye") -> np.ndarray:
    """Patch indices of photos labelled without ink."""
    index = pd.read_parquet(run / "patches" / "index.parquet")
    manifest = pd.read_parquet(run / "manifest.parquet", columns=["image_path", column])
    ink = index["image"].map(dict(zip(manifest["image_path"], manifest[column], strict=True)))
    return np.flatnonzero(ink.astype(str).str.lower().eq("no").to_numpy())


def per_fold(pred: pd.DataFrame) -> pd.Series:
    return pd.Series({k: balanced_accuracy(g) for k, g in pred.groupby("fold")})


def table(run: Path, clf: str, n_boot: int) -> pd.DataFrame:
    rows = []
    for enc, layer, c in cells(run):
        if c != clf and (enc, layer, c) != BASELINE and layer != "handcrafted":
            continue
        pred = predictions(run, enc, layer, c)
        ba = bootstrap_ci(pred, balanced_accuracy, n_boot=n_boot)
        auc = bootstrap_ci(pred, macro_auc, n_boot=n_boot)
        rows.append({"encoder": enc, "layer": layer, "classifier": c, "bal_acc": ba[0],
                     "bal_lo": ba[1], "bal_hi": ba[2], "auc": auc[0], "auc_lo": auc[1],
                     "auc_hi": auc[2]})  # fmt: skip
    return pd.DataFrame(rows)


def best(tab: pd.DataFrame, prefix: str) -> tuple[str, str, str]:
    sub = tab[tab["encoder"].str.startswith(prefix)]
    row = sub.loc[sub["bal_acc"].idxmax()]
    return str(row["encoder"]), str(row["layer"]), str(row["classifier"])


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, n_boot: int) -> tuple[float, float, float]:
    """Balanced accuracy of a minus b (same patches), 95% CI over resampled patients."""
    assert (a["patch"].to_numpy() == b["patch"].to_numpy()).all()
    fa, fb = balanced_accuracy.weighted(a), balanced_accuracy.weighted(b)
    diffs = [fa(w) - fb(w) for w in group_resamples(a["patient_id"].to_numpy(), n_boot, 0)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return balanced_accuracy(a) - balanced_accuracy(b), float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--classifier", default="logreg")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    tab = table(args.run, args.classifier, args.n_boot)
    pd.set_option("display.width", 200)
    print(f"== balanced accuracy / macro AUC [95% CI], classifier {args.classifier} ==")
    fmt = tab.assign(
        bal=[f"{r.bal_acc:.3f} [{r.bal_lo:.3f}, {r.bal_hi:.3f}]" for r in tab.itertuples()],
        AUC=[f"{r.auc:.3f} [{r.auc_lo:.3f}, {r.auc_hi:.3f}]" for r in tab.itertuples()],
    )
    print(fmt.pivot(index="encoder", columns="layer", values="bal").fillna("").to_string())
    print(fmt.pivot(index="encoder", columns="layer", values="AUC").fillna("").to_string())

    base = predictions(args.run, *BASELINE)
    clean = ink_free_patches(args.run)
    tests = []
    imagenet = [e for e in tab["encoder"].unique() if "imagenet" in e]
    for enc in imagenet:
        cell = best(tab, enc)
        pred = predictions(args.run, *cell)
        for subset, rows in (("all photos", slice(None)), ("photos without ink", clean)):
            a, b = pred.iloc[rows], base.iloc[rows]
            res = paired_test(per_fold(a), per_fold(b))
            tests.append({"cell": "/".join(cell), "subset": subset, "n_patches": len(a),
                          "bal_acc": balanced_accuracy(a), "baseline": balanced_accuracy(b),
                          "median_fold_diff": res.median_difference, "p": res.p_value})  # fmt: skip
    out = pd.DataFrame(tests)
    out["p_holm"] = multipletests(out["p"], method="holm")[1]
    print("\n== best ImageNet cells vs colour + LBP (RBF SVM): Wilcoxon over folds, Holm ==")
    print(out.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    print("\n== does in-domain SSL add to ImageNet? best SSL / random cell - best ImageNet cell ==")
    ref_cell = best(tab, "lite0-imagenet")
    ref = predictions(args.run, *ref_cell)
    for prefix in ("lite0-moco", "lite0-simclr", "lite0-random"):
        if not tab["encoder"].str.startswith(prefix).any():
            continue
        cell = best(tab, prefix)
        d, lo, hi = paired_bootstrap(predictions(args.run, *cell), ref, args.n_boot)
        print(f"{'/'.join(cell)} - {'/'.join(ref_cell)}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
