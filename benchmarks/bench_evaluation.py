"""Wall time of the whole evaluation stage on a thesis-sized synthetic feature set.

Builds a run directory holding about 12,600 patches of 23 patients with the thesis's class
counts (4629 AK, 7002 healthy, 945 SK) and cached class- and patient-dependent Gaussian
features of ResNet-50's layer widths, then times skintl's ``evaluate`` stage (every encoder x
layer x classifier x fold) next to the thesis protocol's classifier training (full-batch Adam,
500 epochs, random-patch validation: ``thesis_mlp``) on the same folds, in the same process.
The thesis protocol is slow (about a core-minute per fold at 2048 features), so it is timed on
``--thesis-folds`` folds per layer and its total is extrapolated, which the output says.

    python benchmarks/bench_evaluation.py [--layers layer1 layer2 layer3 layer4]
        [--classifiers mlp logreg knn] [--folds 23] [--n-jobs -1] [--thesis-folds 2]
        [--features realistic|separable] [--compare-former]

``--compare-former`` also runs the stage with the former implementations (one scikit-learn
``MLPClassifier`` and one ``LogisticRegression`` per fold; ``evaluation.mlp.implementation`` and
``evaluation.logreg.implementation: sklearn``) in the same process, and prints the speed-up and
whether each cell's balanced accuracy lies in the former cell's patient-bootstrap 95% CI.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skintl.config import parse_config
from skintl.data.stage import load_patches, patches_inputs, run_data
from skintl.encoders.backbones import layer_info
from skintl.evaluation.baselines import ThesisProtocolMLP
from skintl.evaluation.stage import make_folds, run_evaluation
from skintl.features.stage import encoder_inputs, load_features
from skintl.io import write_json, write_npy, write_parquet
from skintl.rundir import fingerprint

COUNTS = {"AK": 4629, "healthy": 7002, "SK": 945}
SIGNAL_DIMS = 32


def thesis_sized_run(cfg: Any, run_dir: Path, kind: str = "realistic", seed: int = 0) -> None:
    """Stand-in patches and features of ``cfg``'s encoder, recorded under the fingerprints the
    config gives them (the manifest is real: the config's synthetic photos), so that the
    evaluate stage's chain check accepts them."""
    layers = cfg.features.layers
    run_data(cfg, run_dir)
    manifest_fp = json.loads((run_dir / "manifest.json").read_text())["fingerprint"]
    patches_fp = fingerprint(patches_inputs(cfg, manifest_fp))
    features_fp = fingerprint(encoder_inputs(cfg, cfg.features.encoders[0], "random", patches_fp))
    rng = np.random.default_rng(seed)
    y = np.concatenate([[c] * n for c, n in COUNTS.items()])
    patients = rng.integers(0, 23, len(y))
    index = pd.DataFrame(
        {
            "patient_id": [f"P{p:02d}" for p in patients],
            "image": "synthetic",
            "image_idx": patients,
            "class": y,
            "x": 0,
            "y": 0,
        }
    )
    write_parquet(index, run_dir / "patches" / "index.parquet")
    # the evaluation reads only the index and the cached features; placeholder pixels
    write_npy(np.zeros((len(y), 2, 2, 3), np.uint8), run_dir / "patches" / "patches.npy")
    write_json({"fingerprint": patches_fp, "n": len(y)}, run_dir / "patches" / "meta.json")
    codes = pd.factorize(y)[0]
    for layer in layers:
        d = layer_info("resnet50")[layer].channels
        if kind == "separable":  # class signal in every dimension: separability grows with d
            centers = rng.normal(0, 0.15, (3, d))
        else:  # signal in 32 directions whatever the width, near real patches in difficulty
            centers = np.zeros((3, d))
            centers[:, :SIGNAL_DIMS] = rng.normal(0, 0.3, (3, SIGNAL_DIMS))
        shift = rng.normal(0, 0.3, (23, d))  # patient effect: what grouped splits guard against
        X = rng.normal(size=(len(y), d)) + centers[codes] + shift[patients]
        folder = run_dir / "features" / "r50"
        write_npy(X.astype(np.float32), folder / f"{layer}.npy")
        record = {"fingerprint": features_fp, "patches_fingerprint": patches_fp,
                  "shape": list(X.shape)}  # fmt: skip
        write_json(record, folder / f"{layer}.json")


def config(
    layers: list[str], classifiers: list[str], folds: int, n_jobs: int, impl: str = "torch"
) -> dict:
    return {
        "data": {"source": "synthetic"},
        "features": {"encoders": [{"name": "r50", "arch": "resnet50"}], "layers": layers},
        "evaluation": {
            "splits": {"kind": "stratified_group_kfold", "n_splits": folds},
            "classifiers": classifiers,
            "n_jobs": n_jobs,
            "mlp": {"implementation": impl},
            "logreg": {"implementation": impl},
        },
    }


def timed_evaluation(cfg: Any, run: Path) -> tuple[pd.DataFrame, float, dict[str, float]]:
    """The metrics table, the stage's wall time and the seconds per classifier (all layers)."""
    import skintl.evaluation.stage as stage

    spent: dict[str, float] = {}
    run_cell = stage.run_cell

    def timed(*args: Any, **kwargs: Any) -> pd.DataFrame:
        t = time.perf_counter()
        out = run_cell(*args, **kwargs)
        clf = str(args[5]).split("/")[-1]  # desc: encoder/layer/classifier
        spent[clf] = spent.get(clf, 0.0) + time.perf_counter() - t
        return out

    stage.run_cell = timed
    try:
        t = time.perf_counter()
        table = run_evaluation(cfg, run)
        return table, time.perf_counter() - t, spent
    finally:
        stage.run_cell = run_cell


def ci_check(run_old: Path, run_new: Path, table: pd.DataFrame) -> list[str]:
    """Each cell's new balanced accuracy against the old cell's patient-bootstrap 95% CI."""
    from skintl.evaluation.stats import balanced_accuracy, bootstrap_ci

    lines = []
    for r in table.itertuples():
        rel = Path("evaluation") / "r50" / str(r.layer) / str(r.classifier) / "predictions.parquet"
        old = pd.read_parquet(run_old / rel)
        new = pd.read_parquet(run_new / rel)
        est, lo, hi = bootstrap_ci(old, balanced_accuracy, n_boot=1000)
        now = balanced_accuracy(new)
        inside = "inside" if lo <= now <= hi else "OUTSIDE"
        lines.append(
            f"{r.layer}/{r.classifier}: old {est:.3f} [{lo:.3f}, {hi:.3f}], new {now:.3f} {inside}"
        )
    return lines


def time_thesis(cfg: Any, run: Path, layers: list[str], n_folds: int) -> dict[str, float]:
    """Seconds per fold of the thesis protocol's MLP, on the first ``n_folds`` shared folds."""
    _, index = load_patches(run)
    fold = make_folds(cfg, index)
    y = index["class"].to_numpy()
    out = {}
    for layer in layers:
        X = load_features(run, "r50", layer)
        t = time.perf_counter()
        for k in range(n_folds):
            tr, te = fold != k, fold == k
            ThesisProtocolMLP(seed=0).fit(X[tr], y[tr]).predict_proba(X[te])
        out[layer] = (time.perf_counter() - t) / n_folds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["layer1", "layer2", "layer3", "layer4"])
    ap.add_argument("--classifiers", nargs="+", default=["mlp", "logreg", "knn"])
    ap.add_argument("--folds", type=int, default=23)
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--thesis-folds", type=int, default=2)
    ap.add_argument(
        "--features",
        choices=["realistic", "separable"],
        default="realistic",
        help="realistic: class signal in 32 directions (logreg at 0.60-0.77 balanced "
        "accuracy; real PAD-UFES patches give 0.55-0.65); separable: signal in every "
        "dimension (layer4 reaches 1.0, and the MLP trains to its epoch cap)",
    )
    ap.add_argument(
        "--compare-former",
        action="store_true",
        help="also run the stage with the former scikit-learn MLP and logistic regression "
        "(one estimator per fold) and print the speed-up and a CI check",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "torch"
        cfg = parse_config(config(args.layers, args.classifiers, args.folds, args.n_jobs))
        thesis_sized_run(cfg, run, args.features)
        table, t_skintl, spent = timed_evaluation(cfg, run)
        if args.compare_former:
            old_run = Path(tmp) / "sklearn"
            old_cfg = parse_config(
                config(args.layers, args.classifiers, args.folds, args.n_jobs, "sklearn")
            )
            thesis_sized_run(old_cfg, old_run, args.features)
            _, t_old, spent_old = timed_evaluation(old_cfg, old_run)
            checks = ci_check(old_run, run, table)
        t_thesis = time_thesis(cfg, run, args.layers, args.thesis_folds)
    n_cells = len(args.layers) * len(args.classifiers)
    workers = "all cores" if args.n_jobs == -1 else f"{args.n_jobs} jobs"
    print(
        f"thesis-sized set: {sum(COUNTS.values())} patches, 23 patients, {args.folds} folds, "
        f"{args.features} features"
    )
    per_clf = ", ".join(f"{c} {s:.1f} s" for c, s in spent.items())
    print(
        f"skintl evaluate ({workers}): {n_cells} cells ({', '.join(args.classifiers)} x "
        f"{len(args.layers)} layers) x {args.folds} folds: {t_skintl:.1f} s "
        f"({t_skintl / n_cells:.1f} s per cell; {per_clf})"
    )
    if args.compare_former:
        per_old = ", ".join(f"{c} {s:.1f} s" for c, s in spent_old.items())
        print(f"same stage, former scikit-learn MLP and LogisticRegression: {t_old:.1f} s "
              f"({per_old})")  # fmt: skip
        print(f"speed-up of the whole stage: {t_old / t_skintl:.2f}x")
        print("balanced accuracy of each cell against the former cell's patient-bootstrap CI:")
        print("\n".join("  " + line for line in checks))
    for layer, per_fold in t_thesis.items():
        print(
            f"thesis protocol (full-batch Adam, 500 epochs, 1 process) {layer}: "
            f"{per_fold:.1f} s per fold (mean of {args.thesis_folds}), "
            f"extrapolated {per_fold * args.folds:.0f} s for {args.folds} folds"
        )
    total = sum(t_thesis.values()) * args.folds
    print(
        f"thesis protocol, one classifier x {len(args.layers)} layers, extrapolated: "
        f"{total:.0f} s = {total / t_skintl:.1f}x skintl's whole evaluation stage"
    )
    print(table[["layer", "classifier", "balanced_accuracy", "auc_macro"]].to_string(index=False))


if __name__ == "__main__":
    main()
