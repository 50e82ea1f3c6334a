"""`skintl study` pre-trains as a stage and reuses finished encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from skintl.cli import main
from skintl.encoders.backbones import read_encoder_file
from studyhelpers import tiny_config, write_config


def _pretrain_study(root: Path, tmp_path: Path, **run_options: object) -> dict:
    """A study on ``root``'s patients P001-P003 pre-training on every patient of ``root``."""
    source = write_config(tmp_path / "source.yaml", tiny_config(root))
    run = {
        "name": "tiny-simclr",
        "method": "simclr",
        "arch": "resnet18",
        "source": str(source),
        "epochs": 1,
        "batch_size": 8,
        "crop_size": 32,
        "num_workers": 0,
        "accelerator": "cpu",
        "positives": "lesion",
        **run_options,
    }
    return tiny_config(
        root,
        data={"include": {"patient_id": ["P001", "P002", "P003"]}},
        pretrain=[run],
        features={
            "encoders": [{"name": "ssl", "arch": "resnet18", "weights": "pretrain:tiny-simclr"}],
            "layers": ["layer2"],
        },
        evaluation={"classifiers": ["logreg"]},
    )


def test_study_pretrains_then_reuses(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _pretrain_study(synthetic_root, tmp_path)
    config = write_config(tmp_path / "study.yaml", cfg)
    run_dir = tmp_path / "run"
    assert main(["study", str(config), "--run-dir", str(run_dir)]) == 0
    encoder = run_dir / "pretrain" / "tiny-simclr" / "encoder.pt"
    assert encoder.is_file()
    meta = (run_dir / "features" / "ssl" / "layer2.json").read_text()
    assert '"method": "simclr"' in meta

    import skintl.pretrain.stage as stage

    monkeypatch.setattr(stage, "run_one", lambda *a, **k: pytest.fail("pre-trained again"))
    assert main(["study", str(config), "--run-dir", str(run_dir)]) == 0
    # changed settings under the same name: a clear error, never a silent reuse
    cfg["pretrain"][0]["epochs"] = 2
    write_config(config, cfg)
    assert main(["study", str(config), "--run-dir", str(run_dir)]) == 2


def test_study_patients_are_dropped_from_a_source_on_the_same_dataset(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import pandas as pd

    config = write_config(tmp_path / "study.yaml", _pretrain_study(synthetic_root, tmp_path))
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert main(["study", str(config), "--run-dir", str(run_dir)]) == 0
    folder = run_dir / "pretrain" / "tiny-simclr"
    source = pd.read_parquet(folder / "source" / "manifest.parquet")
    assert sorted(source["patient_id"]) == ["P004"]
    provenance = read_encoder_file(folder / "encoder.pt")[2]
    assert provenance["patients"] == ["P004"]  # the encoder names the patients it saw
    assert provenance["dataset"]["root"] == str(synthetic_root)
    assert json.loads((folder / "overlap.json").read_text())["shared_patients"] == 0
    assert "dropped 3 of 4 rows (3 of 4 patients)" in caplog.text


def test_allowed_shared_patients_are_kept_and_flagged(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _pretrain_study(synthetic_root, tmp_path, allow_shared_patients=True)
    config = write_config(tmp_path / "study.yaml", cfg)
    run_dir = tmp_path / "run"
    assert main(["study", str(config), "--run-dir", str(run_dir)]) == 0
    overlap = json.loads((run_dir / "pretrain" / "tiny-simclr" / "overlap.json").read_text())
    assert overlap["shared_patients"] == 3 and overlap["source_patients"] == 4
    assert "holds 3 of the study's 3 patients" in caplog.text
    from skintl.report.html import write_report

    assert "shares 3 of the study" in write_report(run_dir).read_text()


def test_edited_source_config_or_source_file_is_refused(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    config = write_config(tmp_path / "study.yaml", _pretrain_study(root, tmp_path))
    run_dir = tmp_path / "run"
    assert main(["study", str(config), "--run-dir", str(run_dir)]) == 0
    # a source photo edited in place (same size) is a changed input
    photo = root / "images" / "P004_1.png"
    from PIL import Image

    im = Image.open(photo)
    im.rotate(180).save(photo)
    recorded = (run_dir / "config.yaml").read_bytes()
    for command in ("features", "study"):  # the single stage checks the encoder as study does
        capsys.readouterr()
        assert main([command, str(config), "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert "source data changed" in err and err.count("\n") == 1
    # an edited source config (its content, same path) is a changed setting
    source = tmp_path / "source.yaml"
    edited = yaml.safe_load(source.read_text())
    edited["patches"]["stride"] = 8
    write_config(source, edited)
    for command in ("features", "study"):
        assert main([command, str(config), "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert "pretrain run 'tiny-simclr'" in err and "source config" in err
        assert "rerun `skintl study CONFIG`" in err and err.count("\n") == 1
    assert (run_dir / "config.yaml").read_bytes() == recorded


def test_unknown_pretrain_name_is_a_config_error(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config(
        synthetic_root,
        features={"encoders": [{"name": "ssl", "arch": "resnet18", "weights": "pretrain:nope"}]},
    )
    config = write_config(tmp_path / "study.yaml", cfg)
    assert main(["study", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    assert "names no pretrain run" in capsys.readouterr().err


@pytest.mark.parametrize(("method", "source"), [("supervised", "patches"), ("simclr", "images")])
def test_pretrain_command(synthetic_root: Path, tmp_path: Path, method: str, source: str) -> None:
    from skintl.encoders.backbones import load_backbone

    config = write_config(tmp_path / "source.yaml", tiny_config(synthetic_root))
    out = tmp_path / method
    args = [
        "pretrain",
        str(config),
        "--method",
        method,
        "--input",
        source,
        "--image-size",
        "48",
        "--crop-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--accelerator",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress-bar",
        "--out-dir",
        str(out),
    ]
    assert main(args) == 0
    _, prov = load_backbone("resnet18", str(out / "encoder.pt"))
    assert prov["method"] == method and prov["epochs"] == 1


def test_pretrain_command_bad_source_is_one_message(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = write_config(tmp_path / "source.yaml", tiny_config(synthetic_root))
    args = [
        "pretrain",
        str(config),
        "--method",
        "supervised",
        "--input",
        "patches",
        "--epochs",
        "1",
        "--batch-size",
        "100000",
        "--accelerator",
        "cpu",
        "--num-workers",
        "0",
        "--out-dir",
        str(tmp_path / "x"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "skintl: error: pretrain:" in err and "batch" in err and "Traceback" not in err


def _pretrain_command(source: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", str(source), "--method", "supervised", "--epochs", "1",
            "--batch-size", "4", "--crop-size", "32", "--accelerator", "cpu",
            "--num-workers", "0", "--no-progress-bar", "--out-dir", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("given", ["config", "run_dir"])
def test_pretrain_command_excludes_the_patients_of_a_study(
    synthetic_root: Path, tmp_path: Path, given: str
) -> None:
    import pandas as pd

    study = tiny_config(synthetic_root, data={"include": {"patient_id": ["P001", "P002"]}})
    study_config = write_config(tmp_path / "study.yaml", study)
    run_dir = tmp_path / "run"
    assert main(["data", str(study_config), "--run-dir", str(run_dir)]) == 0
    source = write_config(tmp_path / "source.yaml", tiny_config(synthetic_root))
    out = tmp_path / "enc"
    of = study_config if given == "config" else run_dir
    assert main(_pretrain_command(source, out, "--exclude-patients-of", str(of))) == 0
    patients = pd.read_parquet(out / "source" / "manifest.parquet")["patient_id"]
    assert sorted(set(patients)) == ["P003", "P004"]
    assert read_encoder_file(out / "encoder.pt")[2]["patients"] == ["P003", "P004"]
    # the study accepts it: none of its patients was seen
    study["features"] = {**study["features"], "layers": ["layer1"],
                         "encoders": [{"name": "enc", "arch": "resnet18",
                                       "weights": str(out / "encoder.pt")}]}  # fmt: skip
    write_config(study_config, study)
    assert main(["patches", str(study_config), "--run-dir", str(run_dir)]) == 0
    assert main(["features", str(study_config), "--run-dir", str(run_dir)]) == 0


def test_a_study_refuses_an_encoder_pretrained_on_its_patients(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    source = write_config(tmp_path / "source.yaml", tiny_config(synthetic_root))
    out = tmp_path / "enc"
    assert main(_pretrain_command(source, out)) == 0  # no --exclude-patients-of
    encoder = {"name": "enc", "arch": "resnet18", "weights": str(out / "encoder.pt")}
    study = tiny_config(
        synthetic_root,
        data={"include": {"patient_id": ["P001", "P002", "P003"]}},
        features={"encoders": [encoder], "layers": ["layer1"]},
    )
    config, run_dir = write_config(tmp_path / "study.yaml", study), tmp_path / "run"
    assert main(["patches", str(config), "--run-dir", str(run_dir)]) == 0
    recorded = (run_dir / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(["features", str(config), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "pre-trained on 3 of the study's 3 patients" in err and err.count("\n") == 1
    assert "--exclude-patients-of" in err and "allow_shared_patients: true" in err
    assert (run_dir / "config.yaml").read_bytes() == recorded
    study["features"]["encoders"] = [{**encoder, "allow_shared_patients": True}]
    write_config(config, study)
    with caplog.at_level("WARNING"):
        assert main(["features", str(config), "--run-dir", str(run_dir)]) == 0
    assert "pre-trained on 3 of the study's 3 patients (allow_shared_patients: true)" in caplog.text
    from skintl.report.context import run_warnings

    assert run_warnings(run_dir) == [
        f"encoder enc ({out / 'encoder.pt'}) was pre-trained on 3 of the study's patients "
        "(allow_shared_patients: true): it saw skin of patients it is tested on"
    ]


def test_an_imported_encoder_without_patients_warns(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from skintl.encoders.backbones import build_backbone

    weights = tmp_path / "resnet18.pth"
    torch.save(build_backbone("resnet18").state_dict(), weights)
    encoder = tmp_path / "encoder.pt"
    assert main(["weights", "import", "--format", "torchvision", str(weights), "-o",
                 str(encoder)]) == 0  # fmt: skip
    study = tiny_config(
        synthetic_root,
        features={"encoders": [{"name": "enc", "arch": "resnet18", "weights": str(encoder)}],
                  "layers": ["layer1"]},
    )  # fmt: skip
    config = write_config(tmp_path / "study.yaml", study)
    with caplog.at_level("WARNING"):
        assert main(["patches", str(config), "--run-dir", str(tmp_path / "run")]) == 0
        assert main(["features", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    assert "records no pre-training patients" in caplog.text
    assert "overlap with the study's patients cannot be checked" in caplog.text
