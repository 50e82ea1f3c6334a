"""An encoder's recorded pre-training patients, and those of the weights it started from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from skintl.cli import main
from skintl.config import ConfigError, StudyConfig, load_config
from skintl.pretrain.patients import check_encoder_patients, dataset_identity
from studyhelpers import tiny_config, write_config


@pytest.fixture(scope="module")
def study(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A study of P001-P002 whose manifest is built."""
    tmp = tmp_path_factory.mktemp("patients")
    raw = tiny_config(synthetic_root, data={"include": {"patient_id": ["P001", "P002"]}})
    config = write_config(tmp / "study.yaml", raw)
    assert main(["data", str(config), "--run-dir", str(tmp / "run")]) == 0
    return load_config(config), tmp / "run"


def _record(cfg: StudyConfig, patients: list[str], **more: Any) -> dict[str, Any]:
    return {"method": "simclr", "patients": patients, "dataset": dataset_identity(cfg.data), **more}


def _check(study: tuple, provenance: dict[str, Any], allowed: bool = False) -> int:
    cfg, run = study
    return check_encoder_patients("enc", "enc.pt", provenance, cfg, run, allowed)


def test_patients_of_the_init_weights_count(study: tuple) -> None:
    cfg, _ = study
    clean = _record(cfg, ["P003"], init={"method": "supervised-imagenet"})
    assert _check(study, clean) == 0
    leaky_init = _record(cfg, ["P003"], init=_record(cfg, ["P001", "P004"]))
    with pytest.raises(ConfigError, match=r"pre-trained on 1 of the study's 2 patients"):
        _check(study, leaky_init)
    assert _check(study, leaky_init, allowed=True) == 1


def test_other_datasets_and_unknown_records(study: tuple, caplog: pytest.LogCaptureFixture) -> None:
    cfg, _ = study
    elsewhere = {**_record(cfg, ["P001"]), "dataset": {"source": "masked_folder", "root": "/x"}}
    with caplog.at_level(logging.WARNING):
        assert _check(study, elsewhere) == 0  # the same ids name other people
        assert "cannot be checked" not in caplog.text
        assert _check(study, _record(cfg, ["P003"], init={"method": "moco"})) == 0
    assert "records no pre-training patients" in caplog.text  # the init file has no record
