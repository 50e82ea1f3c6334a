"""The ``pretrain`` stage of a study: run each declared pre-training, reuse finished ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from skintl.config import ConfigError, PretrainRunConfig, StudyConfig, load_config
from skintl.io import write_json

log = logging.getLogger(__name__)


def encoder_path(run_dir: Path, name: str) -> Path:
    """Where the study keeps the encoder file of pretrain run ``name``."""
    return run_dir / "pretrain" / name / "encoder.pt"


def resolve_weights(weights: str, run_dir: Path) -> str:
    """``pretrain:<name>`` -> the path of that run's encoder file; other values unchanged."""
    if not weights.startswith("pretrain:"):
        return weights
    path = encoder_path(run_dir, weights.removeprefix("pretrain:"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pre-training not finished; run `skintl study` first")
    return str(path)


def run_one(run: PretrainRunConfig, out_dir: Path, seed: int) -> Path:
    """Pre-train one encoder (resuming from its last checkpoint) and return its file."""
    from skintl.pretrain.augment import AugmentConfig
    from skintl.pretrain.source import load_source
    from skintl.pretrain.train import pretrain

    source_cfg = load_config(run.source)
    images, labels, groups, _ = load_source(
        source_cfg, out_dir, run.input, run.image_size, run.positives
    )
    augment = AugmentConfig(size=run.crop_size, color_strength=run.color_strength)
    options: dict[str, Any] = dict(run.options)
    return pretrain(
        images, labels, groups, method=run.method, arch=run.arch, out_dir=out_dir,
        max_epochs=run.epochs, batch_size=run.batch_size, lr=run.lr,
        accelerator=run.accelerator, devices=run.devices, strategy=run.strategy, seed=seed,
        resume=True, augment=augment, num_workers=run.num_workers, **options,
    )  # fmt: skip


def run_pretrain(cfg: StudyConfig, run_dir: Path) -> list[Path]:
    """Every pretrain run of ``cfg`` whose encoder file is missing; returns all encoder files."""
    paths = []
    for run in cfg.pretrain:
        path = encoder_path(run_dir, run.name)
        settings = path.parent / "run.json"
        wanted = {**run.model_dump(mode="json"), "seed": cfg.seed}
        if settings.is_file() and json.loads(settings.read_text()) != wanted:
            raise ConfigError(
                f"pretrain run {run.name!r}: its settings changed since {path.parent} was made; "
                "give the run a new name, or delete that folder to train it again"
            )
        if path.is_file():
            log.info("pretrain %s: reusing %s", run.name, path)
        else:
            write_json(wanted, settings)
            log.info("pretrain %s: %s %s on %s", run.name, run.method, run.arch, run.source)
            path = run_one(run, path.parent, cfg.seed)
        paths.append(path)
    return paths
