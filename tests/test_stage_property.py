"""Property: after any config edit that changes a result, every single-stage command (and
`bundle` and `report`, which read the run's ``config.yaml``) either refuses, in one line naming
the stage to rerun and leaving ``config.yaml`` as it was, or gives exactly what a fresh run of the
config it read gives. None reuses stale inputs silently."""

from __future__ import annotations

import copy
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skintl.cli import main
from skintl.config import dump_config, load_config
from studyhelpers import quick_config, write_config

Edit = Callable[[dict[str, Any]], None]


def _set(section: str, key: str, value: Any) -> Edit:
    def edit(cfg: dict[str, Any]) -> None:
        cfg[section] = {**cfg[section], key: value}

    return edit


def _seed(cfg: dict[str, Any]) -> None:
    cfg["seed"] += 1


def _arch(cfg: dict[str, Any]) -> None:
    cfg["features"]["encoders"] = [{"name": "r18", "arch": "resnet50", "weights": "random"}]


#: settings that change some stage's output, one edit each
EDITS: dict[str, Edit] = {
    "seed": _seed,
    "patches.stride": _set("patches", "stride", 12),
    "patches.min_lesion_fraction": _set("patches", "min_lesion_fraction", 0.7),
    "patches.healthy_margin": _set("patches", "healthy_margin", 8),
    "patches.max_per_image_class": _set("patches", "max_per_image_class", 6),
    "data.mask_values": _set("data", "mask_values", {1: "SK", 2: "AK"}),
    "data.ink.detect": _set("data", "ink", {"detect": False}),
    "features.arch": _arch,
    "features.input_size": _set("features", "input_size", 40),
    "evaluation.logreg": _set("evaluation", "logreg", {"C": 1.0, "class_weight": "balanced"}),
    "evaluation.splits": _set("evaluation", "splits", {"kind": "group_kfold", "n_splits": 2}),
}
COMMANDS = ["data", "patches", "features", "evaluate", "report", "bundle"]
BUNDLE = ["--encoder", "r18", "--layer", "layer1", "--classifier", "logreg"]


class FreshRuns:
    """Fresh runs (study + bundle) in empty folders, one per resolved config, made once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, config_text: str) -> Path:
        key = hashlib.sha256(config_text.encode()).hexdigest()[:12]
        run = self.root / key / "run"
        if not (run / "fresh.bundle").is_file():
            config = self.root / key / "study.yaml"
            config.parent.mkdir(exist_ok=True)
            config.write_text(config_text)
            assert main(["study", str(config), "--run-dir", str(run)]) == 0
            assert main(["bundle", str(run), *BUNDLE, "-o", str(run / "fresh.bundle")]) == 0
        return run


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshRuns:
    return FreshRuns(tmp_path_factory.mktemp("fresh"))


@pytest.fixture(scope="module")
def baseline(synthetic_root: Path, fresh: FreshRuns) -> tuple[dict[str, Any], Path]:
    cfg = quick_config(synthetic_root)
    with tempfile.TemporaryDirectory() as tmp:
        text = dump_config(load_config(write_config(Path(tmp) / "s.yaml", cfg)))
    return cfg, fresh(text)


def _frames(run: Path, fresh_run: Path, *names: str) -> Iterator[tuple[pd.DataFrame, ...]]:
    for name in names:
        read = pd.read_csv if name.endswith(".csv") else pd.read_parquet
        yield read(run / name), read(fresh_run / name)


def _assert_same_output(command: str, run: Path, fresh_run: Path, out: Path) -> None:
    """The files ``command`` wrote (or, for the report, read) equal a fresh run's."""
    tables = {
        "data": ["manifest.parquet"],
        "patches": ["manifest.parquet", "patches/index.parquet"],
        "evaluate": ["evaluation/metrics.csv"],
        "report": ["evaluation/metrics.csv"],
    }
    for got, want in _frames(run, fresh_run, *tables.get(command, [])):
        pd.testing.assert_frame_equal(got, want, obj=command)
    arrays = {"patches": "patches/patches.npy", "features": "features/r18/layer1.npy"}
    if command in arrays:
        np.testing.assert_array_equal(np.load(run / arrays[command]),
                                      np.load(fresh_run / arrays[command]))  # fmt: skip
    if command == "bundle":
        got = torch.load(out, weights_only=True)["tensors"]
        want = torch.load(fresh_run / "fresh.bundle", weights_only=True)["tensors"]
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(st.sampled_from(sorted(EDITS)), min_size=1, max_size=2, unique=True),
    commands=st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=3),
)
def test_single_stages_recompute_or_refuse(
    baseline: tuple[dict[str, Any], Path],
    fresh: FreshRuns,
    capsys: pytest.CaptureFixture,
    edits: list[str],
    commands: list[str],
) -> None:
    base_cfg, base_run = baseline
    cfg = copy.deepcopy(base_cfg)
    for name in edits:
        EDITS[name](cfg)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = Path(shutil.copytree(base_run, tmp / "run", ignore=shutil.ignore_patterns("report")))
        config = write_config(tmp / "study.yaml", cfg)
        out = tmp / "b.bundle"
        run_dir_commands = {
            "report": ["report", str(run), "--n-boot", "10"],
            "bundle": ["bundle", str(run), *BUNDLE, "-o", str(out)],
        }
        for command in commands:
            recorded = (run / "config.yaml").read_text()
            capsys.readouterr()
            code = main(
                run_dir_commands.get(command, [command, str(config), "--run-dir", str(run)])
            )
            err = capsys.readouterr().err
            where = f"{command} after {edits} (commands {commands})"
            if code == 2:  # refused: one line naming a stage, config.yaml untouched
                assert err.count("\n") == 1 and "rerun `skintl " in err, f"{where}: {err}"
                assert (run / "config.yaml").read_text() == recorded, where
                continue
            assert code == 0, f"{where}: {err}"
            if command in run_dir_commands:  # they read the run's config.yaml
                read = recorded
            else:  # a stage brought up to date with the config records it
                read = dump_config(load_config(config))
                assert (run / "config.yaml").read_text() == read, where
            _assert_same_output(command, run, fresh(read), out)
