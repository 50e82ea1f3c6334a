"""The ``pretrain`` stage of a study: run each declared pre-training, reuse finished ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from skintl.config import ConfigError, EncoderConfig, PretrainRunConfig, StudyConfig, load_config
from skintl.io import write_json
from skintl.pretrain.patients import same_dataset, source_record, study_patients, without_patients
from skintl.rundir import StaleError, patches_fingerprint, sha256_file

log = logging.getLogger(__name__)


def encoder_path(run_dir: Path, name: str) -> Path:
    """Where the study keeps the encoder file of pretrain run ``name``."""
    return run_dir / "pretrain" / name / "encoder.pt"


def current_weights(enc: EncoderConfig, cfg: StudyConfig, run_dir: Path) -> str:
    """The weights an encoder loads: ``random``, ``imagenet``, a file, or for
    ``pretrain:<name>`` that run's encoder file, checked first against the run's current
    settings, source config and source files (as the pre-training stage checks them).

    Raises:
        StaleError: the pre-training has not run yet.
        ConfigError: the pre-training's settings or source data changed since it ran.
    """
    if not enc.weights.startswith("pretrain:"):
        return enc.weights
    run = next(r for r in cfg.pretrain if r.name == enc.weights.removeprefix("pretrain:"))
    path = encoder_path(run_dir, run.name)
    if not path.is_file():
        raise StaleError(f"{path}: pre-training {run.name!r} not finished; run `skintl study "
                         "CONFIG`, which pre-trains it")  # fmt: skip
    source, _ = _checked_settings(run, cfg, run_dir)
    _check_reusable(run, source, path.parent)
    return str(path)


def run_one(run: PretrainRunConfig, source_cfg: StudyConfig, out_dir: Path, seed: int) -> Path:
    """Pre-train one encoder (resuming from its last checkpoint) and return its file."""
    from skintl.pretrain.augment import AugmentConfig
    from skintl.pretrain.source import load_source

    images, labels, groups, _ = load_source(
        source_cfg, out_dir, run.input, run.image_size, run.positives
    )
    write_json({"patches": _source_fingerprint(out_dir)}, out_dir / "source.json")
    augment = AugmentConfig(size=run.crop_size, color_strength=run.color_strength)
    options: dict[str, Any] = dict(run.options)
    from skintl.pretrain.train import pretrain

    return pretrain(
        images, labels, groups, method=run.method, arch=run.arch, out_dir=out_dir,
        max_epochs=run.epochs, batch_size=run.batch_size, lr=run.lr,
        accelerator=run.accelerator, devices=run.devices, strategy=run.strategy, seed=seed,
        resume=True, augment=augment, num_workers=run.num_workers, init=run.init,
        record=source_record(source_cfg, out_dir), **options,
    )  # fmt: skip


def source_config(run: PretrainRunConfig, cfg: StudyConfig, run_dir: Path) -> StudyConfig:
    """The run's source config, without the study's patients when both read the same dataset."""
    source = load_config(run.source)
    if run.allow_shared_patients or not same_dataset(source.data, cfg.data):
        return source
    return without_patients(source, study_patients(run_dir))


def _init_record(init: str) -> dict[str, str]:
    """The starting weights' content, so an encoder file replaced in place is noticed."""
    if init in ("random", "imagenet"):
        return {}
    return {"init_sha256": sha256_file(Path(init))}


def _source_fingerprint(out_dir: Path) -> str | None:
    try:
        return patches_fingerprint(out_dir / "source")
    except (OSError, KeyError, ValueError):
        return None


def _overlap(cfg: StudyConfig, run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """How many of the study's patients the source set holds (0 unless sharing was allowed)."""
    study, source = study_patients(run_dir), study_patients(out_dir / "source")
    return {"study_patients": len(study), "source_patients": len(source),
            "shared_patients": len(study & source)}  # fmt: skip


def _check_reusable(run: PretrainRunConfig, source: StudyConfig, out_dir: Path) -> None:
    """Refuse an encoder whose source data changed since it was trained (files or patches)."""
    from skintl.data.stage import manifest_stale_reason

    reason = manifest_stale_reason(source, out_dir / "source")
    try:
        recorded = json.loads((out_dir / "source.json").read_text()).get("patches")
    except (OSError, json.JSONDecodeError):
        recorded = None
    if reason is None and recorded != _source_fingerprint(out_dir):
        reason = "its patches were cut again"
    if reason is not None:
        raise ConfigError(
            f"pretrain run {run.name!r}: the source data changed since {out_dir} was trained "
            f"({reason}); give the run a new name, or delete that folder and rerun `skintl "
            "study CONFIG` to train it again"
        )


def _checked_settings(
    run: PretrainRunConfig, cfg: StudyConfig, run_dir: Path
) -> tuple[StudyConfig, dict[str, Any]]:
    """The run's source config and settings, refused when they differ from those its folder
    was made with (``run.json``)."""
    source = source_config(run, cfg, run_dir)
    # defaults left out: a setting added to skintl later, at a default that keeps the old
    # behaviour, does not make finished encoders look changed
    wanted = {
        **run.model_dump(mode="json", exclude_defaults=True),
        "seed": cfg.seed,
        "source_config": source.model_dump(mode="json", exclude_defaults=True),
        **_init_record(run.init),
    }
    settings = encoder_path(run_dir, run.name).parent / "run.json"
    if settings.is_file() and json.loads(settings.read_text()) != wanted:
        raise ConfigError(
            f"pretrain run {run.name!r}: its settings or its source config "
            f"({run.source}) changed since {settings.parent} was made; give the run a new name, "
            "or delete that folder and rerun `skintl study CONFIG` to train it again"
        )
    return source, wanted


def run_pretrain(cfg: StudyConfig, run_dir: Path) -> list[Path]:
    """Every pretrain run of ``cfg`` whose encoder file is missing; returns all encoder files.

    A run's settings include its source config's resolved content (with the study's patients
    dropped when source and study read the same dataset); an encoder is reused only when those
    settings and the source's files and patches are unchanged, and refused with the reason when
    they changed.
    """
    paths = []
    for run in cfg.pretrain:
        path = encoder_path(run_dir, run.name)
        source, wanted = _checked_settings(run, cfg, run_dir)
        if path.is_file():
            _check_reusable(run, source, path.parent)
            log.info("pretrain %s: reusing %s", run.name, path)
        else:
            write_json(wanted, path.parent / "run.json")
            log.info("pretrain %s: %s %s on %s", run.name, run.method, run.arch, run.source)
            path = run_one(run, source, path.parent, cfg.seed)
        overlap = _overlap(cfg, run_dir, path.parent)
        write_json({**overlap, "allow_shared_patients": run.allow_shared_patients},
                   path.parent / "overlap.json")  # fmt: skip
        if overlap["shared_patients"]:
            log.warning(
                "pretrain %s: the source set holds %d of the study's %d patients "
                "(allow_shared_patients: true); the report flags this",
                run.name, overlap["shared_patients"], overlap["study_patients"],
            )  # fmt: skip
        else:
            log.info("pretrain %s: source and study share no patient", run.name)
        paths.append(path)
    return paths
