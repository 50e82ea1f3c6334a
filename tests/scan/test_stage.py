"""The scan stage: every photo scanned by a bundle that never saw its patient."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from skintl.config import ConfigError, parse_config
from skintl.scan.bundle import load_bundle
from studyhelpers import tiny_config


def _cfg(root: Path, **scan: object) -> dict:
    cfg = tiny_config(
        root,
        features={
            "encoders": [
                {"name": "d", "arch": "resnet18", "weights": "random", "mode": "dense"},
                {"name": "p", "arch": "resnet18", "weights": "random"},
            ],
            "layers": ["layer2"],
        },
        evaluation={"classifiers": ["logreg"]},
    )
    cfg["scan"] = {"encoder": "d", "patch_encoder": "p", "layer": "layer2", "stride": 16,
                   "n_boot": 50, **scan}  # fmt: skip
    return cfg


def test_scan_stage_is_honest(synthetic_root: Path, tmp_path: Path) -> None:
    from skintl.study import run_study

    cfg = parse_config(_cfg(synthetic_root, modes=["dense", "exact"]))
    run_study(cfg, tmp_path / "run", report=False)
    out = tmp_path / "run" / "scan"
    photos = pd.read_csv(out / "photos.csv")
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    dense = photos[photos["mode"] == "dense"]
    assert sorted(dense["photo"]) == sorted(manifest["image_path"])  # each photo once per mode
    assert sorted(photos.loc[photos["mode"] == "exact", "photo"]) == sorted(dense["photo"])
    assert (photos["leak_warning"].fillna("") == "").all()
    for _, row in photos.iterrows():
        b = load_bundle(out / "bundles" / "d" / f"fold{row['fold']}.pt")
        assert str(row["patient_id"]) not in b.meta["training_patients"]
        assert len(b.meta["training_patients"]) == 3
    full = load_bundle(out / "bundle.pt")
    assert len(full.meta["training_patients"]) == 4 and full.mode == "dense"
    summary = pd.read_csv(out / "summary.csv")
    dice = summary[(summary["metric"] == "dice") & (summary["target_class"] == "AK")].iloc[0]
    assert dice["ci_low"] <= dice["mean"] <= dice["ci_high"]
    assert (out / "dense" / "index.html").is_file()
    diffs = pd.read_csv(out / "mode_differences.csv")  # dense minus exact, photo by photo
    assert set(diffs["mode"]) == {"dense"} and set(diffs["reference"]) == {"exact"}
    wide = photos.pivot(index="photo", columns="mode", values="dice").dropna()
    row = diffs[(diffs["metric"] == "dice") & (diffs["target_class"] == "AK")].iloc[0]
    ak = photos[(photos["mode"] == "exact") & (photos["target_class"] == "AK")]["photo"]
    expect = (wide["dense"] - wide["exact"])[wide.index.isin(ak)].mean()
    assert row["mean_difference"] == pytest.approx(expect)
    from skintl.report.html import write_report

    html = write_report(tmp_path / "run", n_boot=20).read_text()
    assert 'id="whole-photo"' in html and "../scan/dense/index.html" in html
    assert "Modes compared photo by photo" in html and "dense &minus; exact" in html
    assert dice["median_ci_low"] <= dice["median"] <= dice["median_ci_high"]
    assert "median [95% CI]" in html and "Overlays by Dice: best, median, worst" in html
    best = dense.sort_values("dice", ascending=False)["photo"].iloc[0]
    src = f"../scan/dense/{Path(best).stem}_overlay.png"
    assert src in html and (tmp_path / "run" / "report" / src).resolve().is_file()
    page = (out / "dense" / "index.html").read_text()
    for _, r in dense.iterrows():  # every section names its target class, best Dice first
        assert f"{Path(r['photo']).name}: target class {r['target_class']}" in page
    assert page.index(Path(best).name) < min(page.index(Path(p).name) for p in dense["photo"]
                                             if p != best)  # fmt: skip


def test_report_refuses_whole_photo_results_of_other_scan_settings(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from skintl.cli import main
    from studyhelpers import run_commands

    cfg, config, run = _cfg(synthetic_root), tmp_path / "s.yaml", tmp_path / "run"
    assert run_commands(cfg, config, run) == 0
    cfg["scan"]["stride"] = 8  # the scans would differ; only `skintl study` rescans
    assert run_commands(cfg, config, run, "evaluate") == 0
    capsys.readouterr()
    assert main(["report", str(run), "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert "not scanned with the config as it is now" in err and err.count("\n") == 1
    assert run_commands(cfg, config, run) == 0
    assert main(["report", str(run), "--n-boot", "10"]) == 0


def test_scan_config_names_known_features(synthetic_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"scan: encoder 'nope' / layer 'layer2' has no features"):
        parse_config(_cfg(synthetic_root, encoder="nope"))


def test_scan_inputs_are_checked_before_the_long_work(synthetic_root: Path, tmp_path: Path) -> None:
    """A scan stage naming a column the manifest lacks, or photos missing on disk, is reported
    by `skintl check` and refused by the study right after its data stage (no patches cut),
    instead of failing at the end."""
    from skintl.config import parse_config
    from skintl.data.check import check_data
    from skintl.data.validate import DataProblems
    from skintl.study import run_study
    from studyhelpers import tiny_config

    scan = {"encoder": "r18", "layer": "layer2", "modes": [], "export_bundle": False}
    raw = tiny_config(synthetic_root, scan={**scan, "image_column": "no_such_column",
                                             "include": {"site": ["arm"]}})  # fmt: skip
    cfg = parse_config(raw)
    with pytest.raises(DataProblems) as err:
        check_data(cfg)
    assert "scan.image_column 'no_such_column' is not a manifest column" in str(err.value)
    assert "scan.include key 'site'" in str(err.value)
    with pytest.raises(DataProblems, match="no_such_column"):
        run_study(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "patches").exists()
    # a column that exists, but whose files do not
    from skintl.data.check import scan_input_problems

    manifest = pd.DataFrame({"patient_id": ["P1"], "elsewhere": ["gone.png"]})
    cfg = parse_config(tiny_config(synthetic_root, scan={**scan, "image_column": "elsewhere"}))
    (problem,) = scan_input_problems(cfg, manifest)
    assert problem.endswith("gone.png: file of manifest column 'elsewhere' not found")
