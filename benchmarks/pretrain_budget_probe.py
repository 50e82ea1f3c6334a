"""Pre-training at a wall-clock budget, then the linear probe on the target study's folds.

Pre-trains ResNet-18 with each method (supervised, SimCLR, MoCo v2) on a source patch set for at
most ``--epochs`` epochs or ``--budget`` seconds each (Lightning's ``Timer``), then extracts
layer1..layer4 of every encoder (and random init) on a finished study's target patches and runs
logistic regression and kNN on that study's folds (same config, same seed: same folds). Written
for a GPU: on the 2-core CPU the default budget gives about one epoch.

    python benchmarks/pretrain_budget_probe.py --source RUN/pretrain/NAME/source/patches \\
        --source-classes BCC NEV MEL SCC healthy --target RUN --out probe/ [--budget 90]

``--target`` is the study's run directory: its manifest and patches are copied, and its
``config.yaml`` (with this probe's encoders and classifiers) is the config they are checked
against, so the study's data must be where that config says.

Prints and writes ``pretrain.json`` (epochs done, seconds, losses) and ``metrics.csv``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from lightning.pytorch.callbacks import Timer

from skintl.config import parse_config
from skintl.evaluation.stage import run_evaluation
from skintl.features.stage import run_features
from skintl.pretrain.augment import AugmentConfig
from skintl.pretrain.source import positive_groups
from skintl.pretrain.train import pretrain

#: MoCo's queue is kept below the ~3,700 source patches, with a faster key encoder for short runs
RUNS: dict[str, dict] = {
    "supervised": {},
    "simclr": {},
    "moco": {"queue_size": 2048, "key_momentum": 0.99},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="a skintl patches folder")
    ap.add_argument("--source-classes", nargs="+", required=True)
    ap.add_argument("--target", type=Path, required=True, help="a study's run directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=90, help="seconds per method")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--crop-size", type=int, default=32)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--num-workers", type=int, default=14)
    ap.add_argument("--folds", type=int, default=23)
    ap.add_argument("--n-jobs", type=int, default=-1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    index = pd.read_parquet(args.source / "index.parquet")
    images = np.load(args.source / "patches.npy")
    # no target patient in the source set: the encoder must never see a test patient's skin
    target_patients = set(pd.read_parquet(args.target / "patches" / "index.parquet")["patient_id"])
    keep = ~index["patient_id"].isin(target_patients).to_numpy()
    print(f"source: dropped {(~keep).sum()} patches of "
          f"{index.loc[~keep, 'patient_id'].nunique()} target patients", flush=True)  # fmt: skip
    index, images = index[keep].reset_index(drop=True), images[keep]
    labels = np.array([args.source_classes.index(c) for c in index["class"]])
    groups = positive_groups(index, "lesion")  # one lesion and its class; healthy never
    info: dict[str, dict] = {}
    for method, opts in RUNS.items():
        out = args.out / "pretrain" / method
        t = time.perf_counter()
        timer = Timer(duration=timedelta(seconds=args.budget), interval="step")
        pretrain(
            images, labels, groups, method=method, arch="resnet18", out_dir=out,
            max_epochs=args.epochs, batch_size=args.batch_size, accelerator=args.accelerator,
            devices=1, seed=0, augment=AugmentConfig(size=args.crop_size, color_strength=0.25),
            num_workers=args.num_workers, progress_bar=False, callbacks=[timer], **opts,
        )  # fmt: skip
        logs = sorted((out / "logs" / "csv").glob("version_*/metrics.csv"))
        ep = pd.concat(pd.read_csv(f) for f in logs).dropna(subset=["train/loss_epoch"])
        info[method] = {
            "seconds": round(time.perf_counter() - t, 1),
            "epochs": int(ep["epoch"].max()) + 1,
            "loss_per_10_epochs": [round(float(v), 3) for v in ep["train/loss_epoch"].iloc[::10]],
            "loss_last": round(float(ep["train/loss_epoch"].iloc[-1]), 3),
            "options": opts,
        }
        print(method, info[method], flush=True)
        (args.out / "pretrain.json").write_text(json.dumps(info, indent=1))

    out, run = args.out / "pretrain", args.out / "target"
    (run / "patches").mkdir(parents=True, exist_ok=True)
    for f in ("manifest.parquet", "manifest.json", "patches/index.parquet", "patches/patches.npy",
              "patches/meta.json"):  # fmt: skip
        shutil.copy(args.target / f, run / f)
    encoders = [{"name": "r18-random", "arch": "resnet18", "weights": "random"}] + [
        {"name": f"r18-{m}", "arch": "resnet18", "weights": str(out / m / "encoder.pt")}
        for m in RUNS
    ]
    study = yaml.safe_load((args.target / "config.yaml").read_text())
    cfg = parse_config({
        **{k: v for k, v in study.items() if k not in ("pretrain", "scan", "features")},
        "features": {"encoders": encoders, "layers": ["layer1", "layer2", "layer3", "layer4"]},
        "evaluation": {
            "splits": {"kind": "stratified_group_kfold", "n_splits": args.folds,
                       "validation_fraction": 0.2},
            "classifiers": ["logreg", "knn"], "n_jobs": args.n_jobs,
        },
    })  # fmt: skip
    run_features(cfg, run, progress=False)
    table = run_evaluation(cfg, run)
    table.to_csv(args.out / "metrics.csv", index=False)
    cols = ["encoder", "layer", "classifier", "balanced_accuracy", "auc_macro"]
    print(table[cols].to_string(index=False))


if __name__ == "__main__":
    main()
