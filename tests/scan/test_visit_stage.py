"""The scan stage's follow-up (``scan.visits``): series per patient and site, in visit order,
refused when a site has two patients or a visit two photos; end to end on a tiny study."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skintl.config import ConfigError, parse_config
from skintl.scan.image import ScanError
from skintl.scan.visit_stage import visit_series
from studyhelpers import tiny_config


def _photos(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["patient_id", "site", "visit"]).assign(
        photo=lambda d: [f"p{i}.png" for i in range(len(d))]
    )


def test_series_are_ordered_by_visit_and_singletons_dropped() -> None:
    photos = _photos([("A", "s1", "10"), ("A", "s1", "9"), ("A", "s2", "1"), ("B", "s3", "2")])
    series = visit_series(photos, "visit", "site")
    assert len(series) == 1 and list(series[0]["visit"]) == ["9", "10"]  # numbers, not text
    assert len(visit_series(photos, "visit", None)) == 1  # A's three photos, one series
    dates = _photos([("A", "s", "2024-06-01"), ("A", "s", "2023-12-31")])
    assert list(visit_series(dates, "visit", "site")[0]["visit"]) == ["2023-12-31", "2024-06-01"]


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([("A", "s1", "1"), ("B", "s1", "2")], "has photos of patients A, B"),
        ([("A", "s1", "1"), ("A", "s1", "1")], "does not come after"),
    ],
)
def test_two_patients_or_unordered_visits_are_refused(rows: list, why: str) -> None:
    with pytest.raises(ScanError, match=why):
        visit_series(_photos(rows), "visit", "site")


def _cfg(root: Path, **visits: object) -> dict:
    cfg = tiny_config(
        root,
        features={
            "encoders": [{"name": "d", "arch": "resnet18", "weights": "random", "mode": "dense"}],
            "layers": ["layer2"],
        },
        evaluation={"classifiers": ["logreg"]},
    )
    cfg["scan"] = {"encoder": "d", "layer": "layer2", "stride": 16, "n_boot": 50,
                   "modes": ["dense"], "visits": {"column": "visit", "site_column": "lesion_id",
                                                  **visits}}  # fmt: skip
    return cfg


def test_visits_config_is_strict(synthetic_root: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        parse_config(_cfg(synthetic_root, order="visit"))


@pytest.fixture(scope="module")
def visits_root(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic study plus the demo's three follow-up visits of patient P001."""
    from skintl.data.followup import generate_followup
    from skintl.data.synthetic import sample_patient

    root = tmp_path_factory.mktemp("visits")
    for sub in ("images", "masks"):
        shutil.copytree(synthetic_root / sub, root / sub)
    generate_followup(root / "fu", sample_patient(np.random.default_rng([0, 0]), 0), 256, 0)
    meta = pd.read_csv(synthetic_root / "metadata.csv", dtype=str).assign(visit="1")
    fu = pd.read_csv(root / "fu" / "visits.csv", dtype=str)
    extra = meta.iloc[[0] * 3].assign(
        image=["fu/" + p for p in fu["image"]], mask=["fu/" + p for p in fu["mask"]],
        patient_id="P001", lesion_id="P001_fu", diagnostic="AK+SK", visit=list(fu["visit"]),
    )  # fmt: skip
    pd.concat([meta, extra]).to_csv(root / "metadata.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    return root


def test_scan_stage_compares_each_patients_visits(visits_root: Path, tmp_path: Path) -> None:
    from skintl.study import run_study

    run_study(parse_config(_cfg(visits_root)), tmp_path / "run", report=False)
    out = tmp_path / "run" / "scan"
    table = pd.read_csv(out / "visits.csv")
    assert list(table["series"]) == ["P001_P001_fu"] * 2 and list(table["visit_after"]) == [2, 3]
    assert (table["refused"].fillna("") == "").all() and (
        table["registration"] == "projective"
    ).all()
    assert table["doctor_burden_relative_change_pct"].between(-85, -60).all()
    assert (out / "visits" / "P001_P001_fu" / "P001_visit1_to_P001_visit3_change.png").is_file()
    photos = pd.read_csv(out / "photos.csv")
    fold = int(photos.loc[photos["patient_id"] == "P001", "fold"].iloc[0])
    assert (table["fold"] == fold).all()  # the bundle that held P001 out
