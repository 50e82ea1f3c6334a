"""Property: after any edit of the config or the input files, rerunning a study in its old run
directory gives exactly what a fresh run in an empty directory gives."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skintl.config import load_config
from skintl.study import run_study
from studyhelpers import tiny_config, write_config

Edit = Callable[[dict[str, Any], Path], None]


def _set(section: str, key: str, value: Any) -> Edit:
    def edit(cfg: dict[str, Any], data: Path) -> None:
        cfg[section] = {**cfg[section], key: value}

    return edit


def _seed(cfg: dict[str, Any], data: Path) -> None:
    cfg["seed"] = cfg["seed"] + 1


def _swap_mask(i: int) -> Edit:
    def edit(cfg: dict[str, Any], data: Path) -> None:
        path = sorted((data / "masks").glob("*.png"))[i]
        m = np.asarray(Image.open(path)).copy()
        ak, sk = m == 1, m == 2
        m[ak], m[sk] = 2, 1
        Image.fromarray(m).save(path)

    return edit


def _flip_image(i: int) -> Edit:
    def edit(cfg: dict[str, Any], data: Path) -> None:
        path = sorted((data / "images").glob("*.png"))[i]
        im = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(np.ascontiguousarray(im[:, ::-1])).save(path)

    return edit


EDITS: dict[str, Edit] = {
    "seed": _seed,
    "stride": _set("patches", "stride", 12),
    "healthy_margin": _set("patches", "healthy_margin", 8),
    "max_per_image_class": _set("patches", "max_per_image_class", 6),
    "mask_values": _set("data", "mask_values", {1: "SK", 2: "AK"}),
    "input_size": _set("features", "input_size", 40),
    "logreg_C": _set("evaluation", "logreg", {"C": 1.0}),
    "mask_file_0": _swap_mask(0),
    "mask_file_2": _swap_mask(2),
    "image_file_1": _flip_image(1),
}


def _outputs(run: Path) -> dict[str, pd.DataFrame]:
    ev = run / "evaluation" / "r18" / "layer1" / "logreg"
    return {
        "index": pd.read_parquet(run / "patches" / "index.parquet"),
        "metrics": pd.read_csv(run / "evaluation" / "metrics.csv"),
        "predictions": pd.read_parquet(ev / "predictions.parquet"),
    }


def _run(cfg: dict[str, Any], config: Path, run: Path) -> None:
    write_config(config, cfg)
    run_study(load_config(config), run, report=False)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.sampled_from(sorted(EDITS)), min_size=1, max_size=2, unique=True))
def test_rerun_after_edits_equals_a_fresh_run(synthetic_root: Path, edits: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = Path(shutil.copytree(synthetic_root, tmp / "data"))
        cfg = tiny_config(
            data,
            features={"layers": ["layer1"]},
            evaluation={"classifiers": ["logreg"]},
        )
        config, run = tmp / "study.yaml", tmp / "run"
        _run(cfg, config, run)
        for name in edits:  # each edit, then a rerun in the same run directory
            EDITS[name](cfg, data)
            _run(cfg, config, run)
        _run(cfg, config, tmp / "fresh")
        again, fresh = _outputs(run), _outputs(tmp / "fresh")
        for key in again:
            pd.testing.assert_frame_equal(again[key], fresh[key], obj=f"{key} after {edits}")
