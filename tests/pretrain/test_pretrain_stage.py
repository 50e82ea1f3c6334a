"""`skintl study` pre-trains as a stage and reuses finished encoders."""

from __future__ import annotations

from pathlib import Path

import pytest

from skintl.cli import main
from studyhelpers import tiny_config, write_config


def test_study_pretrains_then_reuses(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_config(tmp_path / "source.yaml", tiny_config(synthetic_root))
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
    }
    cfg = tiny_config(
        synthetic_root,
        pretrain=[run],
        features={
            "encoders": [{"name": "ssl", "arch": "resnet18", "weights": "pretrain:tiny-simclr"}],
            "layers": ["layer2"],
        },
        evaluation={"classifiers": ["logreg"]},
    )
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
