"""Tiny study configs for tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """A study config dict on ``root`` that runs end to end in seconds."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {
            "source": "masked_folder",
            "root": str(root),
            "mask_mode": "multiclass",
            "mask_values": {1: "AK", 2: "SK"},
        },
        "patches": {
            "size": 32,
            "stride": 16,
            "min_lesion_fraction": 0.6,
            "healthy_margin": 4,
            "max_per_image_class": 12,
        },
        "features": {
            "encoders": [{"name": "r18", "arch": "resnet18", "weights": "random"}],
            "layers": ["layer1", "layer2", "layer3", "layer4"],
            "batch_size": 64,
        },
        "evaluation": {
            "splits": {"kind": "leave_one_patient_out", "validation_fraction": 0.34},
            "classifiers": ["mlp", "logreg"],
            "mlp": {"max_epochs": 5, "patience": 2},
            "n_jobs": 1,
        },
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def quick_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """:func:`tiny_config` with one layer and logistic regression (seconds per run)."""
    cfg = tiny_config(root, features={"layers": ["layer1"]}, evaluation={"classifiers": ["logreg"]})
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return cfg


def run_commands(cfg: dict[str, Any], config: Path, run_dir: Path, *commands: str) -> int:
    """Write ``cfg`` to ``config`` and run ``skintl COMMAND config --run-dir run_dir`` for each
    command (default: study) until one fails; returns the last exit status."""
    from skintl.cli import main

    write_config(config, cfg)
    code = 0
    for command in commands or ("study",):
        code = main([command, str(config), "--run-dir", str(run_dir)])
        if code:
            return code
    return code
