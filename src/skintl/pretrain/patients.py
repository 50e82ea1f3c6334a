"""Which patients an encoder was pre-trained on, and the check that a study tests none of them.

Every encoder that skintl pre-trains (``skintl pretrain`` or a study's pre-training stage)
records its source set's patients and dataset in its file's provenance (``patients``,
``dataset``). A study compares that record with its own patients whatever route made the
encoder (``weights: pretrain:<name>`` or ``weights: FILE``) and refuses an overlap unless
``allow_shared_patients`` accepts it; an encoder without a record (imported) gets a warning.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skintl.config import ConfigError, DataConfig, StudyConfig, load_config
from skintl.data.stage import check_manifest, load_manifest

log = logging.getLogger(__name__)

#: provenance methods of weights that saw no patient of any skin dataset (random init,
#: torchvision's or timm's ImageNet weights)
BUILT_IN = ("random", "supervised-imagenet")


def dataset_identity(data: DataConfig) -> dict[str, Any]:
    """What names a dataset: patient ids of two configs with the same identity are the same
    people (same source kind, ``data.root`` and metadata file; synthetic: same generator)."""
    if data.source == "synthetic":
        return {"source": "synthetic", **data.synthetic.model_dump(mode="json")}
    return {"source": data.source, "root": str(data.root), "metadata": data.metadata}


def same_dataset(a: DataConfig, b: DataConfig) -> bool:
    """Whether two data sections read the same photos, so their patient ids are the same people."""
    return dataset_identity(a) == dataset_identity(b)


def study_patients(run_dir: Path) -> set[str]:
    """The patient ids of a study run directory (from its manifest)."""
    return set(load_manifest(run_dir)["patient_id"].astype(str))


def without_patients(cfg: StudyConfig, patients: set[str]) -> StudyConfig:
    """``cfg`` whose data stage also leaves out ``patients`` (``data.exclude_patients``)."""
    excluded = sorted({*cfg.data.exclude_patients, *patients})
    return cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"exclude_patients": excluded})}
    )


def source_record(source: StudyConfig, out_dir: Path) -> dict[str, Any]:
    """The provenance entries naming the patients of a pre-training run's source set (read
    from ``out_dir/source``, where the source's data stage ran) and their dataset."""
    return {
        "patients": sorted(study_patients(out_dir / "source")),
        "dataset": dataset_identity(source.data),
    }


def patients_of(study: Path) -> tuple[StudyConfig, set[str]]:
    """The config and patients of a study config file, or of a run directory (its
    ``config.yaml``, whose manifest must be up to date with it)."""
    if study.is_dir():
        cfg = load_config(study / "config.yaml")
        check_manifest(cfg, study)
        return cfg, study_patients(study)
    from skintl.data.sources import build_manifest

    cfg = load_config(study)
    with tempfile.TemporaryDirectory(prefix="skintl-patients-") as tmp:
        manifest = build_manifest(cfg, Path(tmp))
    return cfg, set(manifest["patient_id"].astype(str))


def _lineage(provenance: Any) -> Iterator[dict[str, Any]]:
    """An encoder's provenance, then that of the weights its pre-training started from
    (``init``), and so on: each one saw its own source set's patients."""
    while isinstance(provenance, dict):
        yield provenance
        provenance = provenance.get("init")


def check_encoder_patients(
    name: str, weights: str, provenance: dict[str, Any], cfg: StudyConfig, run_dir: Path,
    allowed: bool,
) -> int:  # fmt: skip
    """How many of the study's patients encoder ``name`` (or the weights it was pre-trained
    from) was pre-trained on; 0 when that is unknown, which is logged as a warning.

    Raises:
        ConfigError: when it shares patients with the study and ``allowed`` is false.
    """
    if weights in ("random", "imagenet"):
        return 0
    seen: set[str] = set()
    for record in _lineage(provenance):
        if record.get("method") in BUILT_IN:
            continue
        if "patients" not in record:
            log.warning(
                "encoder %s: %s records no pre-training patients (an imported encoder, or "
                "weights it started from): its overlap with the study's patients cannot be "
                "checked", name, weights,
            )  # fmt: skip
        elif record.get("dataset") == dataset_identity(cfg.data):  # else: other people
            seen |= set(map(str, record["patients"]))
    study = study_patients(run_dir)
    shared = sorted(study & seen)
    if shared and not allowed:
        raise ConfigError(
            f"encoder {name!r}: {weights} was pre-trained on {len(shared)} of the study's "
            f"{len(study)} patients (e.g. {shared[:3]}); pre-train it with `skintl pretrain "
            "SOURCE --exclude-patients-of CONFIG`, or set allow_shared_patients: true to accept "
            "the leak"
        )
    if shared:
        log.warning("encoder %s: pre-trained on %d of the study's %d patients "
                    "(allow_shared_patients: true)", name, len(shared), len(study))  # fmt: skip
    return len(shared)
