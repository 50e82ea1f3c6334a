"""The report stage's file side: reading a run directory, per-cell caches, writing the tables.

Cached results live in ``<run>/report/cache/`` as JSON holding a key (input fingerprint and
parameters) and a value; a stale or unreadable entry is recomputed, so rerunning the report
only recomputes the cells whose predictions changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from skintl.io import write_json, write_text
from skintl.report.stats_tables import (
    Cell,
    StatsTables,
    assemble,
    cell_summary,
    long_table,
    statistical_tests,
)
from skintl.rundir import patches_fingerprint

log = logging.getLogger(__name__)

REPORT_DIR = "report"
PREDICTIONS = "predictions.parquet"
#: bump when a cached value's meaning changes, so that old caches are recomputed
CACHE_VERSION = 1


def read_config(run_dir: Path) -> dict[str, Any]:
    """The resolved study config (``config.yaml``) as a plain dict.

    Read raw rather than validated: the report must open on a machine where ``data.root`` or a
    weights file no longer exists.
    """
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a run directory of skintl study?")
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return cfg


def find_cells(run_dir: Path) -> list[Cell]:
    """Cells with predictions, in ``evaluation/metrics.csv`` order, then any others by name."""
    ev = run_dir / "evaluation"
    found = {Cell(*p.relative_to(ev).parts[:3]) for p in ev.glob(f"*/*/*/{PREDICTIONS}")}
    order: list[Cell] = []
    if (ev / "metrics.csv").is_file():
        m = pd.read_csv(ev / "metrics.csv", dtype=str, keep_default_na=False)
        cols = m[["encoder", "layer", "classifier"]].itertuples(index=False)
        order = [Cell(str(e), str(la), str(c)) for e, la, c in cols]
        missing = [c.name for c in order if c not in found]
        if missing:
            log.warning("cells in metrics.csv without %s (left out): %s", PREDICTIONS, missing)
    cells = [c for c in order if c in found]
    cells += sorted(found - set(cells), key=lambda c: c.name)
    stale = [c for c in cells if not _current(run_dir, c)]
    if stale:
        log.warning("cells evaluated on other patches than the current ones (left out; rerun "
                    "`skintl evaluate`): %s", [c.name for c in stale])  # fmt: skip
        cells = [c for c in cells if c not in stale]
    if not cells:
        raise FileNotFoundError(
            f"no {ev}/<encoder>/<layer>/<classifier>/{PREDICTIONS}: run `skintl evaluate` first"
        )
    return cells


def _current(run_dir: Path, cell: Cell) -> bool:
    """False when the cell's metrics.json records other patches than the run's current ones."""
    path = predictions_path(run_dir, cell).with_name("metrics.json")
    try:
        recorded = json.loads(path.read_text()).get("patches_fingerprint")
    except (OSError, json.JSONDecodeError):
        return True  # a run made before cells recorded their patches
    return _same_patches(run_dir, recorded)


def _same_patches(run_dir: Path, recorded: str | None) -> bool:
    """False only when both the record and the run name their patches, and they differ (a run
    made before records named their patches, or without patches/meta.json, is trusted)."""
    try:
        current = patches_fingerprint(run_dir)
    except (OSError, KeyError, json.JSONDecodeError):
        return True
    return recorded is None or recorded == current


def predictions_path(run_dir: Path, cell: Cell) -> Path:
    return run_dir / "evaluation" / cell.encoder / cell.layer / cell.classifier / PREDICTIONS


def load_predictions(run_dir: Path, cell: Cell) -> pd.DataFrame:
    """One row per patch: patch, patient_id, fold, y_true, y_pred, prob_<class>..."""
    return pd.read_parquet(predictions_path(run_dir, cell))


def file_fingerprint(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cached(path: Path, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """``compute()``, or the value stored at ``path`` (JSON) when its key equals ``key``."""
    key = {"version": CACHE_VERSION, **key}
    if path.is_file():
        try:
            entry = json.loads(path.read_text())
            if entry.get("key") == key:
                return entry["value"]
        except (json.JSONDecodeError, KeyError, AttributeError):
            log.warning("unreadable cache %s: recomputing", path)
    value = compute()
    write_json({"key": key, "value": value}, path)
    return value


def cell_cache_path(run_dir: Path, cell: Cell) -> Path:
    return run_dir / REPORT_DIR / "cache" / "cells" / f"{cell.slug}.json"


def cached_summary(
    run_dir: Path, cell: Cell, n_boot: int, alpha: float, seed: int
) -> dict[str, Any]:
    """:func:`~skintl.report.stats_tables.cell_summary` of a cell, cached by its predictions."""
    pred_path = predictions_path(run_dir, cell)
    key = {"predictions": file_fingerprint(pred_path), "n_boot": n_boot, "alpha": alpha}
    key["seed"] = seed

    def compute() -> dict[str, Any]:
        log.info("report: bootstrap of %s (%d resamples)", cell.name, n_boot)
        return cell_summary(pd.read_parquet(pred_path), n_boot, alpha, seed)

    summary: dict[str, Any] = cached(cell_cache_path(run_dir, cell), key, compute)
    return summary


def build_stats_tables(
    run_dir: Path, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> StatsTables:
    """Compute (or read from the cache) every cell's summary, assemble, write the CSVs.

    The CSVs go to ``<run>/report/``: main_table, per_patient, per_fold, layer_effect and,
    when the test runs, friedman, friedman_ranks, friedman_pairwise.
    """
    cells = find_cells(run_dir)
    summaries = {c: cached_summary(run_dir, c, n_boot, alpha, seed) for c in cells}
    per_fold = long_table(summaries, "per_fold")
    # Wilcoxon falls back to a permutation test for <= 13 blocks with ties: seconds per pair
    digest = hashlib.sha256(per_fold.to_csv(index=False).encode()).hexdigest()[:16]
    path = run_dir / REPORT_DIR / "cache" / "tests.json"
    tests = cached(
        path, {"per_fold": digest, "alpha": alpha}, lambda: statistical_tests(per_fold, alpha)
    )
    tables = assemble(summaries, alpha, tests)
    for name, table in tables.csv_tables().items():
        write_text(table.to_csv(index=False), run_dir / REPORT_DIR / name)
    return tables


def feature_meta(run_dir: Path, encoder: str, layer: str) -> dict[str, Any] | None:
    """The ``.json`` written beside ``features/<encoder>/<layer>.npy``, or None."""
    path = run_dir / "features" / encoder / f"{layer}.json"
    if not path.is_file():
        return None
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def feature_sets(run_dir: Path, cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Encoder (or descriptor) -> layers that have ``features/<encoder>/<layer>.npy``.

    The config's encoders and layers come first in its order, then any other feature folders
    (e.g. hand-crafted descriptors) by name.
    """
    feats = cfg.get("features") or {}
    listed = feats.get("layers", [])
    layers = [str(x) for x in listed] if isinstance(listed, list) else []  # "all": arch order
    names = [str(e["name"]) for e in feats.get("encoders", [])]
    root = run_dir / "features"
    others = sorted(p.name for p in root.glob("*") if p.is_dir() and p.name not in names)
    out: dict[str, list[str]] = {}
    for enc in names + others:
        stems = sorted(p.stem for p in (root / enc).glob("*.npy"))
        ordered = [x for x in layers if x in stems] + [x for x in stems if x not in layers]
        if ordered:
            out[enc] = ordered
    return out


def load_features(run_dir: Path, encoder: str, layer: str) -> np.ndarray:
    """Pooled features ``(N, C)`` float32, memory-mapped."""
    return np.load(run_dir / "features" / encoder / f"{layer}.npy", mmap_mode="r")


def cached_embedding(
    run_dir: Path,
    encoder: str,
    layer: str,
    embed: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    params: dict[str, Any],
    n_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``embed(X) -> (rows (M,), coords (M, 2))`` of a layer's features, cached.

    The key is the features' fingerprint (from their ``.json``, else the ``.npy`` bytes) and
    ``params`` (the embedding's settings). None when the file is absent, does not have
    ``n_rows`` rows, or was computed from other patches than the current ones.
    """
    npy = run_dir / "features" / encoder / f"{layer}.npy"
    if not npy.is_file():
        return None
    if n_rows is not None and len(load_features(run_dir, encoder, layer)) != n_rows:
        log.warning("%s does not have one row per patch (%d): no embedding", npy, n_rows)
        return None
    meta = feature_meta(run_dir, encoder, layer) or {}
    if not _same_patches(run_dir, meta.get("patches_fingerprint")):
        log.warning("%s was computed from other patches than the current ones: no embedding", npy)
        return None
    fp = meta.get("fingerprint") or file_fingerprint(npy)
    path = run_dir / REPORT_DIR / "cache" / "embeddings" / f"{encoder}__{layer}.json"

    def compute() -> dict[str, Any]:
        log.info("report: embedding of %s/%s", encoder, layer)
        rows, coords = embed(load_features(run_dir, encoder, layer))
        return {"rows": rows.tolist(), "coords": coords.tolist()}

    value = cached(path, {"features": fp, **params}, compute)
    return np.asarray(value["rows"], dtype=np.int64), np.asarray(value["coords"], dtype=float)
