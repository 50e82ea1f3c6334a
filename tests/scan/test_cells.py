"""The cell head: every skin cell labelled from its mask; thresholds from training patients only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skintl.scan.cells import (
    CellTable,
    best_threshold,
    cell_grid,
    choose_thresholds,
    inner_folds,
    training_rows,
)
from skintl.scan.head import Head

CLASSES = ["AK", "healthy", "SK"]


def test_cells_are_labelled_from_pure_blocks_and_boundaries_left_out() -> None:
    """4 px cells of a 12 x 10 photo (3 x 3 cells, the last column 2 px wide)."""
    lab = np.full((12, 10), -1)
    lab[0:4, 0:4] = 0  # cell (0, 0): all AK
    lab[4:6, 0:4] = 2  # cell (1, 0): half SK, half healthy -> boundary
    lab[8:12, 8:10] = 2  # cell (2, 2): the narrow edge cell, all SK
    skin = np.ones((12, 10), bool)
    skin[0:4, 4:8] = False  # cell (0, 1): no skin -> off the domain
    skin[4:8, 4:6] = False  # cell (1, 1): half skin -> still on it
    skin[0:4, 0:4] = False  # cell (0, 0): a pale lesion the skin rule drops -> on it
    g = cell_grid(lab, skin, 4, CLASSES)
    assert g.domain.tolist() == [[True, False, True], [True, True, True], [True, True, True]]
    assert g.label.tolist() == [[0, -1, 1], [-1, 1, 1], [1, 1, 2]]
    assert g.doctor.tolist() == [[0, -1, -1], [2, -1, -1], [-1, -1, 2]]  # half a block is enough


def _table(seed: int = 0, n_patients: int = 6, cells: int = 200) -> CellTable:
    """One photo per patient; AK cells have a high first feature, healthy a low one, and a few
    SK cells a high second one. Every photo targets AK."""
    rng = np.random.default_rng(seed)
    label = rng.choice([0, 1, 2], size=n_patients * cells, p=[0.15, 0.8, 0.05])
    X = rng.normal(0, 1, (len(label), 3)).astype(np.float32)
    X[:, 0] += 2.5 * (label == 0)
    X[:, 1] += 3.0 * (label == 2)
    photo = np.repeat(np.arange(n_patients), cells)
    patients = np.array([f"P{i}" for i in range(n_patients)])
    return CellTable(X, label, np.where(label == 1, -1, label), photo, patients,
                     np.array(["AK"] * n_patients))  # fmt: skip


def _fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Head:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skintl.scan.head import head_from_estimator

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500)).fit(X, y)
    return head_from_estimator(model, "logreg")


def _plant(table: CellTable, patient: str) -> CellTable:
    """``patient``'s photo: every cell outlined as AK but looking healthy, and labelled so."""
    rows = table.rows_of([patient])
    X, label, doctor = table.X.copy(), table.label.copy(), table.doctor.copy()
    X[rows, 0] = -3.0
    label[rows], doctor[rows] = 0, 0
    return CellTable(X, label, doctor, table.photo, table.patients, table.targets)


def test_thresholds_never_see_the_scanned_patient() -> None:
    """A planted leak: the held-out patient's photo is changed so that any threshold tuned on
    it would move; the thresholds chosen on the training patients must not."""
    clean, train = _table(), [f"P{i}" for i in range(5)]  # P5 is the scanned patient
    planted = _plant(clean, "P5")
    for objective in ("dice", "burden"):
        args = (CLASSES, _fit, objective, 3, None, 0)
        honest = choose_thresholds(clean, train, *args)
        assert honest == choose_thresholds(planted, train, *args)
        assert set(honest) == {"AK"} and 0.01 <= honest["AK"] <= 0.99
        leaky = choose_thresholds(planted, [*train, "P5"], *args)
        assert leaky != choose_thresholds(clean, [*train, "P5"], *args)  # the plant shows


def test_best_threshold_by_dice_and_by_burden() -> None:
    # photo 0: doctor cells 0-3 with probabilities .9 .8 .7 .3; others .6 .1 .1 .1
    prob = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.1, 0.1, 0.1])
    doctor = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    photo = np.zeros(8, int)
    # Dice: 8/9 for t in (0.1, 0.3] (4 found, 1 false), 6/8 in (0.3, 0.6], 6/7 in (0.6, 0.7];
    # the lowest threshold of the best run wins
    assert best_threshold(prob, doctor, photo, "dice") == 0.11
    assert best_threshold(prob[:4], doctor[:4], photo[:4], "dice") == 0.01  # no false cell
    # burden: 4 doctor cells; t in (0.3, 0.6] predicts 4 cells: error 0 (first at 0.31)
    assert best_threshold(prob, doctor, photo, "burden") == 0.31
    with pytest.raises(ValueError, match="unknown threshold objective"):
        best_threshold(prob, doctor, photo, "f1")


def test_training_rows_keep_labelled_cells_of_the_patients() -> None:
    t = _table()
    rows = training_rows(t, ["P1", "P2"], None, 0)
    assert set(t.patients[t.photo[rows]]) == {"P1", "P2"} and (t.label[rows] >= 0).all()
    assert len(rows) == 400  # every cell of _table is labelled
    capped = training_rows(t, ["P1", "P2"], 50, 0)
    assert len(capped) == 100 and np.isin(capped, rows).all()
    groups = inner_folds([f"P{i}" for i in range(7)], 3, 0)
    assert len(groups) == 3 and sorted(p for g in groups for p in g) == [f"P{i}" for i in range(7)]


def test_cell_head_fits_the_natural_prior(scan_run: Path) -> None:
    from skintl.config import load_config
    from skintl.scan.bundle import fit_head
    from skintl.scan.cell_export import cell_fitter

    cfg = load_config(scan_run / "config.yaml")
    ev = cfg.evaluation
    balanced = cfg.model_copy(update={"evaluation": ev.model_copy(
        update={"logreg": ev.logreg.model_copy(update={"class_weight": "balanced"})})})  # fmt: skip
    t = _table()
    y = np.asarray(CLASSES)[t.label]
    groups = t.patients[t.photo]
    head = cell_fitter(balanced, "logreg")(t.X, y, groups)
    weighted, _ = fit_head(balanced, t.X, y, groups, "logreg")
    natural, _ = fit_head(cfg, t.X, y, groups, "logreg")  # the tiny study: no class weights
    assert cfg.evaluation.logreg.class_weight is None
    np.testing.assert_allclose(head.biases[0], natural.biases[0])
    assert not np.allclose(head.biases[0], weighted.biases[0])
    # natural prior: the mean predicted healthy probability is near its 80% frequency
    healthy = head.predict_proba(t.X)[:, head.classes.index("healthy")].mean()
    assert healthy == pytest.approx(0.8, abs=0.03)


@pytest.fixture(scope="module")
def cell_bundle(scan_run: Path) -> Path:
    from skintl.scan.cell_export import make_cell_bundle

    out = scan_run.parent / "cells.bundle"
    make_cell_bundle(scan_run, "r18-dense", "layer2", "logreg", out, threshold="dice")
    return out


def test_scan_cells_equal_the_training_cells(scan_run: Path, cell_bundle: Path) -> None:
    """One feature path: scanning a training photo at its own scale classifies the very
    features the head was trained on, border cells included."""
    from skintl.config import load_config
    from skintl.data.sources import effective_data_config, lesion_label_map, read_mask, read_rgb
    from skintl.scan.bundle import load_bundle
    from skintl.scan.cell_export import cell_table
    from skintl.scan.scanner import cell_probabilities
    from skintl.scan.skin import skin_mask

    bundle = load_bundle(cell_bundle)
    assert bundle.mode == "cells" and bundle.scan_mode(None) == "cells"
    assert set(bundle.thresholds) == {"AK"} and bundle.meta["threshold_objective"] == "dice"
    cfg = load_config(scan_run / "config.yaml")
    table = cell_table(cfg, scan_run, "r18-dense", "layer2")
    m = pd.read_parquet(scan_run / "manifest.parquet").iloc[0]
    photo = read_rgb(Path(m["image_path"]))
    got = cell_probabilities(bundle, photo, "cpu", tile=48)  # tiles equal one pass
    data = effective_data_config(cfg, scan_run)
    lab = lesion_label_map(read_mask(Path(m["annotation"])), data, m["labels"], cfg.classes)
    grid = cell_grid(lab, skin_mask(photo, cfg.patches.size), bundle.stride, cfg.classes)
    cy, cx = np.nonzero(grid.domain)  # the table's rows of photo 0, in raster order
    expect = bundle.head.predict_proba(table.X[table.photo == 0])
    np.testing.assert_allclose(got[cy, cx], expect, atol=1e-5)
    h, w = got.shape[:2]
    assert {0, h - 1} <= set(cy.tolist()) and {0, w - 1} <= set(cx.tolist())  # border cells


def test_bundle_and_scan_commands_with_a_cell_head(
    scan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from skintl.cli import main

    out = tmp_path / "c.bundle"
    args = ["bundle", str(scan_run), "--encoder", "r18", "--layer", "layer2", "--head", "cells"]
    assert main([*args, "--classifier", "logreg", "--exclude-patients", "P001", "-o",
                 str(out)]) == 0  # fmt: skip
    assert "(cells features), logreg on 3 patients" in capsys.readouterr().out
    assert main([*args, "--classifier", "svm_linear", "-o", str(tmp_path / "x")]) == 2
    assert "cannot be a cell head" in capsys.readouterr().err
    image = pd.read_parquet(scan_run / "manifest.parquet")["image_path"].iloc[0]
    assert main(["scan", str(out), str(image), "-o", str(tmp_path / "s")]) == 0
    assert pd.read_csv(tmp_path / "s" / "scan_metrics.csv")["mode"].tolist() == ["cells"]
    assert main(["scan", str(out), str(image), "--mode", "dense", "-o", str(tmp_path / "d")]) == 2
    assert "feature mode 'cells'" in capsys.readouterr().err


def test_scan_stage_compares_the_cell_head_with_the_patch_head(
    synthetic_root: Path, tmp_path: Path
) -> None:
    from skintl.config import parse_config
    from skintl.scan.bundle import load_bundle
    from skintl.study import run_study
    from studyhelpers import tiny_config

    raw = tiny_config(
        synthetic_root,
        features={
            "encoders": [{"name": "d", "arch": "resnet18", "weights": "random", "mode": "dense"}],
            "layers": ["layer2"],
        },
        evaluation={"classifiers": ["logreg"]},
    )
    raw["scan"] = {"encoder": "d", "layer": "layer2", "modes": ["dense", "cells"], "stride": 16,
                   "n_boot": 20, "head": "cells", "cells": {"threshold": "burden"}}  # fmt: skip
    run_study(parse_config(raw), tmp_path / "run", report=False)
    out = tmp_path / "run" / "scan"
    photos = pd.read_csv(out / "photos.csv")
    cells, dense = photos[photos["mode"] == "cells"], photos[photos["mode"] == "dense"]
    assert sorted(cells["photo"]) == sorted(dense["photo"]) and len(cells) == 4
    for _, row in cells.iterrows():  # each photo's head and thresholds never saw its patient
        b = load_bundle(out / "bundles" / "d-cells" / f"fold{row['fold']}.pt")
        assert b.mode == "cells" and str(row["patient_id"]) not in b.meta["training_patients"]
        assert row["threshold"] == b.thresholds.get(row["target_class"])
    diffs = pd.read_csv(out / "mode_differences.csv")
    assert set(diffs["mode"]) == {"cells"} and set(diffs["reference"]) == {"dense"}
    assert load_bundle(out / "bundle.pt").mode == "cells"  # scan.head: cells


def test_a_cell_head_of_two_taps_scans_its_training_cells(scan_run: Path, tmp_path: Path) -> None:
    """Several taps on one grid: the bundle records them (finest grid, summed channels), loads
    strictly, and its scan of a training photo classifies the very cells it was trained on."""
    from skintl.config import load_config
    from skintl.data.sources import effective_data_config, lesion_label_map, read_mask, read_rgb
    from skintl.scan.bundle import load_bundle
    from skintl.scan.cell_export import cell_table, make_cell_bundle
    from skintl.scan.scanner import cell_probabilities
    from skintl.scan.skin import skin_mask

    out = tmp_path / "two.bundle"
    meta = make_cell_bundle(scan_run, "r18-dense", ["layer2", "layer1"], "logreg", out)
    assert meta["cell_layers"] == ["layer1", "layer2"] and meta["layer"] == "layer2"
    bundle = load_bundle(out)
    assert bundle.cell_strides == {"layer1": 4, "layer2": 8} and bundle.cell_stride == 4
    assert bundle.head.n_features == 64 + 128
    cfg = load_config(scan_run / "config.yaml")
    table = cell_table(cfg, scan_run, "r18-dense", ["layer1", "layer2"])
    one = cell_table(cfg, scan_run, "r18-dense", "layer1")
    np.testing.assert_allclose(table.X[:, :64], one.X, atol=1e-5)  # same grid, same cells
    m = pd.read_parquet(scan_run / "manifest.parquet").iloc[0]
    photo = read_rgb(Path(m["image_path"]))
    got = cell_probabilities(bundle, photo, "cpu", tile=48)
    data = effective_data_config(cfg, scan_run)
    lab = lesion_label_map(read_mask(Path(m["annotation"])), data, m["labels"], cfg.classes)
    cy, cx = np.nonzero(cell_grid(lab, skin_mask(photo, cfg.patches.size), 4, cfg.classes).domain)
    expect = bundle.head.predict_proba(table.X[table.photo == 0])  # raster order of the domain
    np.testing.assert_allclose(got[cy, cx], expect, atol=1e-5)


def test_a_cell_bundle_whose_taps_disagree_with_its_arch_is_refused(
    cell_bundle: Path, tmp_path: Path
) -> None:
    import json

    import torch

    from skintl.scan.bundle import BundleError, load_bundle

    obj = torch.load(cell_bundle, map_location="cpu", weights_only=True)
    meta = json.loads(obj["meta"])
    meta["cell_layers"], meta["cell_strides"] = ["layer2", "layer1"], [8, 4]  # wrong order
    bad = tmp_path / "bad.bundle"
    torch.save({"meta": json.dumps(meta), "tensors": obj["tensors"]}, bad)
    with pytest.raises(BundleError, match="cell taps"):
        load_bundle(bad)


def test_cells_are_painted_between_their_centres_or_as_blocks() -> None:
    """Bilinear painting keeps each cell's value at its centre and interpolates between
    centres; block painting gives every pixel its cell's value; off the skin is NaN."""
    from skintl.scan.windows import paint_cells

    cells = np.array([[[0.0], [1.0]], [[1.0], [1.0]]], np.float32)  # (2, 2, 1), 4 px cells
    skin = np.ones((7, 8), bool)  # the last cell row 3 px high
    skin[0, 0] = False
    block = paint_cells(cells, 4, skin, "block")
    smooth = paint_cells(cells, 4, skin, "bilinear")
    assert block.shape == smooth.shape == (7, 8, 1)
    assert np.isnan(block[0, 0, 0]) and np.isnan(smooth[0, 0, 0])
    assert block[1:4, 0:4, 0].max() == 0 and block[0, 4:, 0].min() == 1
    # row 1 lies on the top cells' centre row (y = 1.5 px): from cell 0's value (0) at its
    # centre x = 1.5 to cell 1's (1) at x = 5.5, linearly: pixel x sits at x + 0.5
    np.testing.assert_allclose(smooth[1, 1:7, 0], [0, 0.125, 0.375, 0.625, 0.875, 1], atol=1e-6)
    assert smooth[6, 7, 0] == 1 and 0 < smooth[3, 3, 0] < 1
    with pytest.raises(ValueError, match="block, bilinear"):
        paint_cells(cells, 4, skin, "nearest")
