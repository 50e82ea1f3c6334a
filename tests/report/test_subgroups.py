"""The report's Subgroups section: on the fake run (known predictions) and end to end."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from skintl.cli import main
from skintl.io import write_parquet
from skintl.report.stage import build_stats_tables, read_config
from skintl.report.subgroups import SCORES_CSV, TESTS_CSV, subgroup_context, subgroup_tables
from studyhelpers import tiny_config, write_config

CLASSES = ["AK", "healthy", "SK"]
PARAMS = {"n_boot": 30, "alpha": 0.05, "seed": 0}


def _with_subgroups(run: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Photo-level columns in the fake run's manifest (one photo per patient P1..P6)."""
    manifest = pd.read_parquet(run / "manifest.parquet")
    manifest["ink"] = ["True", "True", "True", "False", "False", "False"]  # P1..P3 inked
    manifest["age"] = ["40", "45", "", "70", "75", "80"]
    write_parquet(manifest, run / "manifest.parquet")
    cfg = read_config(run) | {"report": report}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def _tables(run: Path, report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    cfg = _with_subgroups(run, report)
    main_table = build_stats_tables(run, n_boot=10).main
    out = subgroup_tables(run, cfg, main_table, CLASSES, PARAMS)
    assert out is not None
    return out


def test_subgroup_scores_follow_the_planted_errors(fake_run: Path) -> None:
    scores, tests, notes = _tables(fake_run, {"subgroups": ["ink", "age", "nope"]})
    cells = list(
        dict.fromkeys(scores["encoder"] + "/" + scores["layer"] + "/" + scores["classifier"])
    )
    # best cell of each encoder, then the baselines
    assert cells == ["enc_a/layer1/mlp", "enc_b/layer2/mlp", "baseline/-/lbp_yiq_svm",
                     "lbp_yiq/handcrafted/svm_rbf"]  # fmt: skip
    ink = scores[(scores["column"] == "ink") & (scores["encoder"] == "baseline")]
    # the baseline calls the healthy patches of P1..P3 (the inked patients) AK
    recall = ink.set_index("group")["recall_healthy"]
    assert recall.to_dict() == {"False": 1.0, "True": 0.0}
    assert ink["n_patients"].tolist() == [3, 3] and ink["n_patches"].tolist() == [30, 30]
    perfect = scores[scores["encoder"] == "enc_a"]
    assert (perfect["balanced_accuracy"] == 1.0).all()
    age = scores[(scores["column"] == "age") & (scores["encoder"] == "enc_a")]
    assert age["group"].tolist() == ["40", "45", "70", "75", "80", "missing"]  # few levels
    assert "column 'nope' is not in the manifest" in notes[0]
    test = tests[(tests["encoder"] == "baseline") & (tests["column"] == "ink")]
    ba = test.set_index("metric").loc["balanced_accuracy"]
    assert ba["statistic"] == pytest.approx(1 / 3) and ba["n_permuted"] == 6
    # 20 distinct splits of 6 patients into 3 + 3; 2 give the observed spread
    assert ba["p_value"] < 0.2
    assert pd.read_csv(fake_run / "report" / SCORES_CSV).shape == scores.shape
    assert pd.read_csv(fake_run / "report" / TESTS_CSV).shape == tests.shape


def test_numeric_bins_are_stated(fake_run: Path) -> None:
    report = {"subgroups": ["age"], "subgroup_bins": {"age": [0, 60, 100]}}
    scores, _, _ = _tables(fake_run, report)
    one = scores[scores["encoder"] == "enc_a"]
    assert one["group"].tolist() == ["[0, 60)", "[60, 100]", "missing"]
    assert one["n_patients"].tolist() == [2, 3, 1]
    assert (one["grouping"] == "bins as configured: [0, 60), [60, 100]").all()
    missing = one.set_index("group").loc["missing"]
    assert math.isnan(missing["balanced_accuracy_low"]) and "one patient" in missing["note"]
    ctx = subgroup_context(*_tables(fake_run, report), CLASSES)
    assert [c["name"] for c in ctx["columns"]] == ["age"]
    assert ctx["columns"][0]["grouping"] == "bins as configured: [0, 60), [60, 100]"


def test_edited_values_are_not_read_from_the_cache(fake_run: Path) -> None:
    before, _, _ = _tables(fake_run, {"subgroups": ["ink"]})
    manifest = pd.read_parquet(fake_run / "manifest.parquet")
    manifest["ink"] = "True"
    write_parquet(manifest, fake_run / "manifest.parquet")
    cfg = read_config(fake_run)
    main_table = build_stats_tables(fake_run, n_boot=10).main
    after, _, _ = subgroup_tables(fake_run, cfg, main_table, CLASSES, PARAMS)  # type: ignore[misc]
    assert set(before["group"]) == {"True", "False"} and set(after["group"]) == {"True"}


def test_no_subgroups_no_section(fake_report: Path) -> None:
    assert 'id="subgroups"' not in fake_report.read_text()


def test_study_report_shows_the_subgroups(synthetic_root: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    images = pd.read_csv(data / "metadata.csv", dtype=str)["image"]
    extra = tmp_path / "ink.csv"
    pd.DataFrame({"image": images, "ink_by_eye": ["True", "False"] * 2}).to_csv(extra, index=False)
    cfg = tiny_config(
        data,
        data={"extra_metadata": str(extra)},
        features={"layers": ["layer1"]},
        evaluation={"classifiers": ["logreg"]},
        report={"subgroups": ["ink_by_eye", "age", "region"], "subgroup_permutations": 20},
    )
    config = write_config(tmp_path / "s.yaml", cfg)
    assert main(["study", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    html = (tmp_path / "run" / "report" / "index.html").read_text()
    assert '<section id="subgroups">' in html and 'href="#subgroups"' in html
    for column in ("ink_by_eye", "age", "region"):
        assert f"<h3><code>{column}</code></h3>" in html
    scores = pd.read_csv(tmp_path / "run" / "report" / SCORES_CSV, keep_default_na=False)
    ink = scores[scores["column"] == "ink_by_eye"]
    assert sorted(ink["group"]) == ["False", "True"] and ink["n_patients"].tolist() == [2, 2]
    assert f'href="{SCORES_CSV}"' in html


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"subgroup_bins": {"age": [50, 10]}}, r"report.subgroup_bins.*age: bin edges must be"),
        ({"subgroup": ["ink"]}, r"report.subgroup: unknown key"),
        ({"subgroup_permutations": 0}, r"report.subgroup_permutations"),
    ],
)
def test_report_settings_are_checked(synthetic_root: Path, report: dict, message: str) -> None:
    from skintl.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=message):
        parse_config(tiny_config(synthetic_root, report=report))


def test_an_extra_metadata_file_edited_after_the_manifest_is_named(
    fake_run: Path, tmp_path: Path
) -> None:
    from skintl.io import write_json
    from skintl.rundir import sha256_file

    extra = tmp_path / "ink.csv"
    extra.write_text("image,ink\nP1.png,1\n")
    write_json(
        {"fingerprint": "x", "extra_metadata": sha256_file(extra)}, fake_run / "manifest.json"
    )
    cfg = _with_subgroups(fake_run, {"subgroups": ["ink"]})
    cfg["data"]["extra_metadata"] = str(extra)
    main_table = build_stats_tables(fake_run, n_boot=10).main
    assert subgroup_tables(fake_run, cfg, main_table, CLASSES, PARAMS)[2] == []  # type: ignore[index]
    extra.write_text("image,ink\nP1.png,0\n")
    notes = subgroup_tables(fake_run, cfg, main_table, CLASSES, PARAMS)[2]  # type: ignore[index]
    assert notes == [
        f"{extra} changed after the manifest was built: rerun `skintl data` (or `study`)"
    ]
