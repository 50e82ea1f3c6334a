"""Wall time of the whole evaluation stage on a thesis-sized synthetic feature set.

Builds a run directory holding about 12,600 patches of 23 patients with the thesis's class
counts (4629 AK, 7002 healthy, 945 SK) and cached class- and patient-dependent Gaussian
features of ResNet-50's layer widths, then times skintl's ``evaluate`` stage (every encoder x
layer x classifier x fold) next to the thesis protocol's classifier training (full-batch Adam,
500 epochs, random-patch validation: ``thesis_mlp``) on the same folds, in the same process.

    python benchmarks/bench_evaluation.py [--layers layer1 layer2 layer3 layer4]
        [--classifiers mlp logreg knn] [--folds 23] [--n-jobs -1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skintl.config import parse_config
from skintl.data.stage import fingerprint
from skintl.encoders.backbones import layer_info
from skintl.evaluation.stage import run_evaluation
from skintl.io import write_json, write_npy, write_parquet

COUNTS = {"AK": 4629, "healthy": 7002, "SK": 945}


def thesis_sized_run(run_dir: Path, layers: list[str], seed: int = 0) -> None:
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
    write_json({"fingerprint": "bench", "n": len(y)}, run_dir / "patches" / "meta.json")
    codes = pd.factorize(y)[0]
    for layer in layers:
        d = layer_info("resnet50")[layer].channels
        centers = rng.normal(0, 0.15, (3, d))
        shift = rng.normal(0, 0.3, (23, d))  # patient effect: what grouped splits guard against
        X = rng.normal(size=(len(y), d)) + centers[codes] + shift[patients]
        folder = run_dir / "features" / "r50"
        write_npy(X.astype(np.float32), folder / f"{layer}.npy")
        write_json({"fingerprint": fingerprint([layer, seed])}, folder / f"{layer}.json")


def config(layers: list[str], classifiers: list[str], folds: int, n_jobs: int) -> dict:
    return {
        "data": {"source": "synthetic"},
        "features": {"encoders": [{"name": "r50", "arch": "resnet50"}], "layers": layers},
        "evaluation": {
            "splits": {"kind": "stratified_group_kfold", "n_splits": folds},
            "classifiers": classifiers,
            "n_jobs": n_jobs,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["layer1", "layer2", "layer3", "layer4"])
    ap.add_argument("--classifiers", nargs="+", default=["mlp", "logreg", "knn"])
    ap.add_argument("--folds", type=int, default=23)
    ap.add_argument("--n-jobs", type=int, default=-1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        thesis_sized_run(run, args.layers)
        cfg = parse_config(config(args.layers, args.classifiers, args.folds, args.n_jobs))
        t = time.perf_counter()
        table = run_evaluation(cfg, run)
        t_skintl = time.perf_counter() - t
        thesis = parse_config(config(args.layers, ["thesis_mlp"], args.folds, args.n_jobs))
        t = time.perf_counter()
        run_evaluation(thesis, run)
        t_thesis = time.perf_counter() - t
    n_cells = len(args.layers) * len(args.classifiers)
    print(f"thesis-sized set: {sum(COUNTS.values())} patches, 23 patients, {args.folds} folds")
    print(
        f"skintl evaluate: {n_cells} cells ({', '.join(args.classifiers)} x "
        f"{len(args.layers)} layers): {t_skintl:.1f} s ({t_skintl / n_cells:.1f} s per cell)"
    )
    print(
        f"thesis protocol (full-batch Adam, 500 epochs) x {len(args.layers)} layers: "
        f"{t_thesis:.1f} s ({t_thesis / len(args.layers):.1f} s per cell)"
    )
    print(table[["layer", "classifier", "balanced_accuracy", "auc_macro"]].to_string(index=False))


if __name__ == "__main__":
    main()
