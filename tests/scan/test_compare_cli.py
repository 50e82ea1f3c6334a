"""`skintl compare` end to end on the synthetic follow-up, and the pairs it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skintl.cli import main
from skintl.data.followup import generate_followup
from skintl.data.synthetic import make_image, sample_patient


@pytest.fixture(scope="module")
def followup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's follow-up visits (256 px, seed 0) and a photo of other skin."""
    root = tmp_path_factory.mktemp("followup")
    generate_followup(root, sample_patient(np.random.default_rng([0, 0]), 0), 256, 0)
    other, _ = make_image(np.random.default_rng(5), 256)
    Image.fromarray(other).save(root / "other.png")
    return root


def test_compare_three_visits(dense_bundle: Path, followup: Path, tmp_path: Path) -> None:
    v = [str(followup / f"P001_visit{k}.png") for k in (1, 2, 3)]
    m = [str(followup / "masks" / f"P001_visit{k}.png") for k in (1, 2, 3)]
    out = tmp_path / "cmp"
    rc = main(["compare", str(dense_bundle), *v, "--doctor-mask-before", m[0],
               "--doctor-mask-after", *m[1:], "--doctor-mask-value", "1", "--patient-id", "P001",
               "--visit", "1", "2", "3", "--skin", "all", "--match-scale",
               "-o", str(out)])  # fmt: skip
    assert rc == 0
    table = pd.read_csv(out / "compare.csv")
    assert list(table["visit_after"]) == [2, 3] and (table["registration"] == "projective").all()
    assert (table["inliers"] >= 15).all() and (table["reprojection_error_px"] < 1).all()
    # the doctor's (true) AK burden: two AK cleared, two shrunk to 40 %, one new
    assert (table["doctor_burden_relative_change_pct"].between(-85, -60)).all()
    assert (table["doctor_dice_registered"] > table["doctor_dice_unregistered"]).all()
    assert (table["skin_overlap_dice"] > 0.95).all()
    # --match-scale: later photos at the first's scale times the zoom (the same skin, same px)
    assert np.allclose(table["scale_after"], table["scale_before"] * table["zoom"])
    for k in (2, 3):
        for name in ("side_by_side", "change"):
            assert (out / f"P001_visit1_to_P001_visit{k}_{name}.png").is_file()
    assert (out / "P001_visit3_overlay.png").is_file() and (out / "scan_metrics.csv").is_file()
    rows = json.loads((out / "compare.json").read_text())
    assert np.asarray(rows[0]["matrix"]).shape == (3, 3)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["--patient-id", "P001", "P002"], "of 2 patients"),
        (["--visit", "2", "1"], "does not come after"),
        (["--visit", "2024-05-01", "2024-04-30"], "does not come after"),
    ],
)
def test_visits_of_two_patients_or_out_of_order_are_refused(
    dense_bundle: Path, followup: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    extra: list, why: str,
) -> None:  # fmt: skip
    out = tmp_path / "cmp"
    photos = [str(followup / "P001_visit1.png"), str(followup / "P001_visit2.png")]
    assert main(["compare", str(dense_bundle), *photos, *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unregistrable_pair_is_refused_and_nothing_written(
    dense_bundle: Path, followup: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cmp"
    photos = [str(followup / "P001_visit1.png"), str(followup / "other.png")]
    assert main(["compare", str(dense_bundle), *photos, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other.png onto" in err and "cannot register" in err and "nothing was written" in err
    assert len(err.splitlines()) == 1 and not out.exists()
