"""A tiny fake run directory with predictions of known quality (no pipeline run).

6 patients x 10 patches (4 healthy, 3 AK, 3 SK), one fold per patient. Cells:

- ``enc_a/layer1/mlp``: every prediction right.
- ``enc_a/layer2/mlp``: the AK patches of P1 and P2 predicted SK (their balanced accuracy 2/3).
- ``enc_b/layer1/mlp``: everything predicted healthy (balanced accuracy 1/3 everywhere).
- ``enc_b/layer2/mlp``: the SK patches of P3..P6 predicted AK.
- ``baseline/-/lbp_yiq_svm``: the healthy patches of P1..P3 predicted AK; no features.
- ``lbp_yiq/handcrafted/svm_rbf``: the AK patches of P4 predicted healthy; features, one layer.

Tests reach these through fixtures (``pythonpath`` puts ``tests/`` first, so ``conftest``
imports the top-level one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from skintl.io import write_json, write_npy, write_parquet, write_text
from skintl.labels import AK, DEFAULT_CLASSES, HEALTHY, SK
from skintl.report.stats_tables import Cell

CLASSES = list(DEFAULT_CLASSES)
PATIENTS = [f"P{i}" for i in range(1, 7)]
ENCODERS = ["enc_a", "enc_b"]
LAYERS = ["layer1", "layer2"]
PER_PATIENT = [HEALTHY] * 4 + [AK] * 3 + [SK] * 3


def _index() -> pd.DataFrame:
    rows = []
    for i, pid in enumerate(PATIENTS):
        for j, cls in enumerate(PER_PATIENT):
            rows.append({"patient_id": pid, "image": f"{pid}.png", "image_idx": i, "class": cls})
            rows[-1] |= {"x": 10 * j, "y": 0}
    return pd.DataFrame(rows)


def _flip(index: pd.DataFrame, patients: list[str], true: str | None, pred: str) -> np.ndarray:
    y = index["class"].to_numpy().copy()
    sel = index["patient_id"].isin(patients).to_numpy()
    if true is not None:
        sel &= y == true
    y[sel] = pred
    return y


def expected_predictions(index: pd.DataFrame) -> dict[tuple[str, str, str], np.ndarray]:
    """The ``y_pred`` column of every cell (see the module docstring)."""
    return {
        ("enc_a", "layer1", "mlp"): index["class"].to_numpy(),
        ("enc_a", "layer2", "mlp"): _flip(index, ["P1", "P2"], AK, SK),
        ("enc_b", "layer1", "mlp"): _flip(index, PATIENTS, None, HEALTHY),
        ("enc_b", "layer2", "mlp"): _flip(index, ["P3", "P4", "P5", "P6"], SK, AK),
        ("baseline", "-", "lbp_yiq_svm"): _flip(index, ["P1", "P2", "P3"], HEALTHY, AK),
        ("lbp_yiq", "handcrafted", "svm_rbf"): _flip(index, ["P4"], AK, HEALTHY),
    }


def predictions(index: pd.DataFrame, y_pred: np.ndarray) -> pd.DataFrame:
    """A predictions table: probability 0.8 on the predicted class, 0.1 on the others."""
    fold = index["patient_id"].map({p: k for k, p in enumerate(PATIENTS)})
    df = pd.DataFrame(
        {
            "patch": np.arange(len(index)),
            "patient_id": index["patient_id"],
            "fold": fold.astype(np.int64),
            "y_true": index["class"],
            "y_pred": y_pred,
        }
    )
    for c in CLASSES:
        df[f"prob_{c}"] = np.where(y_pred == c, 0.8, 0.1).astype(np.float32)
    return df


def _config(root: str) -> dict[str, object]:
    return {
        "name": "fake",
        "seed": 3,
        "classes": CLASSES,
        "data": {"source": "masked_folder", "root": root},
        "patches": {"size": 8, "stride": 8, "min_lesion_fraction": 0.6, "healthy_margin": 4},
        "features": {
            "encoders": [{"name": e, "arch": "resnet18", "weights": "random"} for e in ENCODERS],
            "layers": LAYERS,
            "input_size": None,
        },
        "evaluation": {
            "splits": {"kind": "leave_one_patient_out", "n_splits": 6, "validation_fraction": 0.2},
            "classifiers": ["mlp"],
            "mlp": {"max_epochs": 5},
        },
    }


def make_fake_run(run: Path, root: str = "/data/pad-ufes-20-masked") -> Path:
    """Write the fake run directory into ``run`` and return it."""
    rng = np.random.default_rng(0)
    index = _index()
    write_text(yaml.safe_dump(_config(root), sort_keys=False), run / "config.yaml")
    manifest = pd.DataFrame({"image_path": [f"{p}.png" for p in PATIENTS], "patient_id": PATIENTS})
    write_parquet(manifest, run / "manifest.parquet")
    write_parquet(index, run / "patches" / "index.parquet")
    code = index["class"].map({c: k for k, c in enumerate(CLASSES)}).to_numpy()
    patches = rng.integers(0, 60, size=(len(index), 8, 8, 3)) + 90 * code[:, None, None, None]
    write_npy(patches.astype(np.uint8), run / "patches" / "patches.npy")
    for enc in ENCODERS:
        for layer in LAYERS:
            X = rng.normal(size=(len(index), 8)) + 2.0 * np.eye(8)[code]
            write_npy(X.astype(np.float32), run / "features" / enc / f"{layer}.npy")
            meta = {"fingerprint": f"{enc}-{layer}-0", "provenance": {"method": "random"}}
            write_json(meta, run / "features" / enc / f"{layer}.json")
    X = rng.normal(size=(len(index), 5)) + 2.0 * np.eye(5)[code]
    write_npy(X.astype(np.float32), run / "features" / "lbp_yiq" / "handcrafted.npy")
    cells = expected_predictions(index)
    fold = predictions(index, index["class"].to_numpy())[["patient_id", "fold"]]
    write_parquet(fold.assign(**{"class": index["class"]}), run / "evaluation" / "folds.parquet")
    for (enc, layer, clf), y_pred in cells.items():
        cell_dir = run / "evaluation" / enc / layer / clf
        write_parquet(predictions(index, y_pred), cell_dir / "predictions.parquet")
    metrics = pd.DataFrame(list(cells), columns=["encoder", "layer", "classifier"])
    write_text(metrics.to_csv(index=False), run / "evaluation" / "metrics.csv")
    return run


@pytest.fixture(scope="session")
def fake_predictions() -> dict[Cell, pd.DataFrame]:
    """Every cell's predictions table, as written into the fake run."""
    index = _index()
    return {Cell(*k): predictions(index, y) for k, y in expected_predictions(index).items()}


@pytest.fixture(scope="session")
def fake_run_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_run(tmp_path_factory.mktemp("fake") / "run")


@pytest.fixture
def fake_run(fake_run_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the fake run directory (tests may write its report)."""
    return Path(shutil.copytree(fake_run_template, tmp_path / "run"))


@pytest.fixture(scope="session")
def fake_report(fake_run_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``index.html`` of a report written once into a copy of the fake run (n_boot = 50)."""
    from threadpoolctl import threadpool_limits

    from skintl.report.html import write_report

    run = Path(shutil.copytree(fake_run_template, tmp_path_factory.mktemp("rep") / "run"))
    with threadpool_limits(limits=1):  # t-SNE and BLAS: the test machine's cores are shared
        return write_report(run, n_boot=50)
