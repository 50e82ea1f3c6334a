"""The ``evaluate`` stage: encoder x layer x classifier cells over shared patient-grouped folds.

The folds are made once (``evaluation/folds.parquet``) and shared by every cell, so that cells
can be compared fold by fold. A cell's predictions and metrics are written atomically and skipped
when present with a matching fingerprint.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from skintl.config import FineTuneCellConfig, StudyConfig
from skintl.data.stage import check_patches, load_patches
from skintl.evaluation.classifiers import CLASSIFIERS, fit_grouped
from skintl.evaluation.metrics import classification_metrics, metric_columns
from skintl.evaluation.splits import check_training_classes, outer_splits
from skintl.features.handcrafted import HANDCRAFTED_LAYER
from skintl.features.stage import checked_record, feature_inputs, load_features, weights_id
from skintl.io import write_json, write_npy, write_parquet, write_text
from skintl.pretrain.stage import current_weights
from skintl.progress import progress
from skintl.rundir import fingerprint, invalidate, stale

log = logging.getLogger(__name__)

SUMMARY_METRICS = ["balanced_accuracy", "auc_macro", "macro_f1", "accuracy"]


def make_folds(cfg: StudyConfig, index: pd.DataFrame) -> np.ndarray:
    """Fold number of every patch (N,), checked so every training fold has every class."""
    s = cfg.evaluation.splits
    y, groups = index["class"].to_numpy(), index["patient_id"].to_numpy()
    splits = outer_splits(s.kind, s.n_splits, y, groups, cfg.seed)
    check_training_classes(splits, y, cfg.classes)
    fold = np.full(len(index), -1, dtype=np.int64)
    for k, (_, te) in enumerate(splits):
        fold[te] = k
    return fold


def _fit_fold(
    est: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fold: np.ndarray,
    k: int,
    classes: list[str],
    cache: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Test indices, class probabilities (n_test, K) and warning counts by category of fold k."""
    tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
    if cache is not None and cache.is_file():  # finished before an interruption
        return te, np.load(cache), json.loads(cache.with_suffix(".warnings.json").read_text())
    # one BLAS thread per fold: folds run in parallel, and oversubscribed BLAS threads are
    # several times slower on small matrices than one thread
    with counted_warnings() as counts, threadpool_limits(limits=1):
        model = fit_grouped(clone(est), X[tr], y[tr], groups[tr])
        proba = in_class_order(model.predict_proba(X[te]), model.classes_, classes)
    if cache is not None:
        write_json(counts, cache.with_suffix(".warnings.json"))
        write_npy(proba, cache)  # last: marks the fold finished
    return te, proba, counts


@contextmanager
def counted_warnings() -> Iterator[dict[str, int]]:
    """Record the block's warnings (not printed) and count them by category in the dict."""
    counts: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield counts
    counts.update(Counter(w.category.__name__ for w in caught))


def in_class_order(proba: np.ndarray, labels: Any, classes: list[str]) -> np.ndarray:
    """(N, K) probabilities with columns reordered from ``labels`` to ``classes``."""
    order = [list(labels).index(c) for c in classes]
    return np.ascontiguousarray(proba[:, order])


def run_cell(
    cfg: StudyConfig,
    X: np.ndarray,
    index: pd.DataFrame,
    fold: np.ndarray,
    est: Any,
    desc: str,
    partial: Path | None = None,
) -> pd.DataFrame:
    """Cross-validated predictions of one classifier on one feature matrix (N, d).

    With ``partial``, each finished fold's probabilities are kept there, so that an interrupted
    cell resumes with the folds it had not finished.
    """
    y, groups = index["class"].to_numpy(), index["patient_id"].to_numpy()
    if hasattr(est, "cross_val_proba"):  # trains every fold at once
        results = _all_folds_at_once(est, X, y, groups, fold, cfg.classes)
    else:
        n_jobs = cfg.evaluation.n_jobs
        results = _fold_by_fold(est, X, y, groups, fold, cfg.classes, n_jobs, desc, partial)
    parts, fold_warnings = [], []
    for k, (te, proba, counts) in enumerate(results):
        fold_warnings.append({"fold": k, **counts})
        part = pd.DataFrame(proba, columns=[f"prob_{c}" for c in cfg.classes])
        part.insert(0, "patch", te)
        part.insert(1, "patient_id", groups[te])
        part.insert(2, "fold", k)
        part.insert(3, "y_true", y[te])
        part.insert(4, "y_pred", np.asarray(cfg.classes)[proba.argmax(axis=1)])
        parts.append(part)
    pred = pd.concat(parts, ignore_index=True).sort_values("patch", ignore_index=True)
    pred.attrs["warnings"] = fold_warnings
    return pred


FoldOutput = tuple[np.ndarray, np.ndarray, dict[str, int]]


def _fold_by_fold(
    est: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray, fold: np.ndarray,
    classes: list[str], n_jobs: int, desc: str, partial: Path | None,
) -> list[FoldOutput]:  # fmt: skip
    """One fit per fold, folds in parallel processes; finished folds kept in ``partial``."""
    n_folds = int(fold.max()) + 1
    jobs = (
        delayed(_fit_fold)(
            est, X, y, groups, fold, k, classes, partial / f"fold_{k}.npy" if partial else None
        )
        for k in range(n_folds)
    )
    bar = progress(jobs, desc, "fold", total=n_folds)
    return list(Parallel(n_jobs=n_jobs)(bar))


def _all_folds_at_once(
    est: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray, fold: np.ndarray,
    classes: list[str],
) -> list[FoldOutput]:  # fmt: skip
    """Every fold trained in one call of the estimator's ``cross_val_proba``.

    A warning whose instance has a ``fold`` attribute is counted on that fold, any other on
    fold 0."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels, probas = clone(est).cross_val_proba(X, y, groups, fold)
    counts: list[Counter[str]] = [Counter() for _ in probas]
    for w in caught:
        counts[getattr(w.message, "fold", 0)][w.category.__name__] += 1
    return [
        (np.flatnonzero(fold == k), in_class_order(p, labels, classes), dict(counts[k]))
        for k, p in enumerate(probas)
    ]


def warning_summary(fold_warnings: list[dict[str, int]]) -> dict[str, Any]:
    """Total warnings by category and the per-fold counts (folds without warnings left out)."""
    total: Counter[str] = Counter()
    for f in fold_warnings:
        total.update({k: v for k, v in f.items() if k != "fold"})
    return {"total": dict(total), "folds": [f for f in fold_warnings if len(f) > 1]}


def cell_metrics(pred: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Pooled metrics and per-fold metrics of one cell's predictions (and its warnings)."""
    proba = pred[[f"prob_{c}" for c in classes]].to_numpy()
    pooled = classification_metrics(pred["y_true"].to_numpy(), proba, classes)
    folds = []
    for k, g in pred.groupby("fold"):
        m = classification_metrics(g["y_true"].to_numpy(), proba[g.index], classes)
        folds.append({"fold": int(str(k)), **m})
    return {
        "pooled": pooled,
        "folds": folds,
        "warnings": warning_summary(pred.attrs.get("warnings", [])),
    }


def planned_cells(
    cfg: StudyConfig, run_dir: Path
) -> tuple[pd.DataFrame, np.ndarray, list[tuple[Cell, str]]]:
    """The patch index, the folds, and every cell of the config with the fingerprint its
    results must have, rebuilt from the config up the chain (manifest, patches, features).

    Raises:
        StaleError: before any work, when the patches or a cell's features are stale; the
            message names the stage to rerun.
    """
    patches_fp = check_patches(cfg, run_dir)
    _, index = load_patches(run_dir)
    fold = make_folds(cfg, index)
    base = {"folds": fingerprint(fold.tolist()), "seed": cfg.seed, "classes": cfg.classes}
    cells = _cells(cfg, run_dir, patches_fp)
    return index, fold, [(c, fingerprint({**base, **c.fingerprint})) for c in cells]


def run_evaluation(cfg: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Evaluate every (encoder, layer, classifier) cell; returns and writes the metrics table."""
    index, fold, cells = planned_cells(cfg, run_dir)
    out = run_dir / "evaluation"
    write_parquet(index.assign(fold=fold)[["patient_id", "class", "fold"]], out / "folds.parquet")
    rows = []
    for cell, fp in progress(cells, "evaluate", "cell"):
        cell_dir = out / cell.encoder / cell.layer / cell.classifier
        metrics = _cached_metrics(cell_dir, fp)
        if metrics is None:
            invalidate(cell_dir / "metrics.json")
            partial = cell_dir / f"partial-{fp}"
            desc = f"{cell.encoder}/{cell.layer}/{cell.classifier}"
            pred = run_cell(cfg, cell.load_x(), index, fold, cell.estimator, desc, partial)
            metrics = cell_metrics(pred, cfg.classes)
            write_parquet(pred, cell_dir / "predictions.parquet")
            # metrics.json is written last: its presence marks the cell complete
            record = {"fingerprint": fp, "patches_fingerprint": cell.patches, **metrics}
            write_json(record, cell_dir / "metrics.json")
            shutil.rmtree(partial, ignore_errors=True)
        rows.append(_summary_row(cell.encoder, cell.layer, cell.classifier, metrics, cfg.classes))
    table = pd.DataFrame(rows)
    write_text(table.to_csv(index=False), out / "metrics.csv")
    return table


def check_evaluation(cfg: StudyConfig, run_dir: Path) -> None:
    """Refuse a run whose evaluated cells do not all match the config as it is now.

    Raises:
        StaleError: naming the first stale stage up the chain (data, patches, features) or the
            first cell not evaluated from the current config (`skintl evaluate`).
    """
    for cell, fp in planned_cells(cfg, run_dir)[2]:
        cell_dir = run_dir / "evaluation" / cell.encoder / cell.layer / cell.classifier
        if _cached_metrics(cell_dir, fp) is None:
            raise stale(cell_dir, "not evaluated from the config as it is now", "evaluate")


@dataclass
class Cell:
    """One evaluated configuration: what it is called, reads, fits, and depends on."""

    encoder: str
    layer: str
    classifier: str
    load_x: Callable[[], np.ndarray]
    estimator: Any
    fingerprint: dict[str, Any]
    patches: str  # the fingerprint of the patches it was computed from


def _feature_cell(
    cfg: StudyConfig, run_dir: Path, spec: tuple[str, str, str], inputs: dict[str, Any]
) -> Cell:
    enc, layer, clf = spec
    meta = checked_record(run_dir, enc, layer, inputs)
    est = CLASSIFIERS.get(clf)(cfg.evaluation, cfg.seed)
    fp = {"features": meta["fingerprint"], "clf": clf, "params": _params(est)}
    return Cell(enc, layer, clf, partial(load_features, run_dir, enc, layer), est, fp,
                inputs["patches"])  # fmt: skip


def _finetune_cell(
    cfg: StudyConfig, run_dir: Path, ft: FineTuneCellConfig, patches_fp: str
) -> Cell:
    from skintl.evaluation.finetune import finetune_factory

    enc = next(e for e in cfg.features.encoders if e.name == ft.encoder)
    weights = current_weights(enc, cfg, run_dir)
    est = finetune_factory(
        enc.arch, weights, ft.layer, epochs=ft.epochs, batch_size=ft.batch_size, lr=ft.lr,
        head_hidden=ft.head_hidden, patience=ft.patience, accelerator=ft.accelerator,
        validation_fraction=cfg.evaluation.splits.validation_fraction, seed=cfg.seed,
        input_size=cfg.features.input_size,
    )  # fmt: skip
    fp = {"patches": patches_fp, "weights": weights_id(weights, cfg.seed, enc.arch),
          "clf": "finetune", "params": _params(est)}  # fmt: skip
    return Cell(ft.encoder, ft.layer, "finetune", lambda: np.asarray(load_patches(run_dir)[0]),
                est, fp, patches_fp)  # fmt: skip


def _cells(cfg: StudyConfig, run_dir: Path, patches_fp: str) -> list[Cell]:
    """Every cell of the study, in table order, sharing the same folds; each one's features
    checked against the config (:func:`~skintl.features.stage.checked_record`)."""
    e, f = cfg.evaluation, cfg.features
    specs = [(enc.name, layer, clf) for enc in f.encoders for layer in f.encoder_layers(enc)
             for clf in e.classifiers]  # fmt: skip
    specs += [(n, HANDCRAFTED_LAYER, clf) for n in f.handcrafted
              for clf in e.handcrafted_classifiers]  # fmt: skip
    specs += [(c["encoder"], c["layer"], c["classifier"]) for c in e.extra_cells]
    inputs: dict[str, dict[str, Any]] = {}  # per feature set, rebuilt once
    for name in dict.fromkeys(spec[0] for spec in specs):
        inputs[name] = feature_inputs(cfg, run_dir, name, patches_fp)
    cells = [_feature_cell(cfg, run_dir, spec, inputs[spec[0]]) for spec in specs]
    return cells + [_finetune_cell(cfg, run_dir, ft, patches_fp) for ft in e.finetune]


def _params(est: Any) -> dict[str, str]:
    return {k: repr(v) for k, v in sorted(est.get_params(deep=True).items())}


def _cached_metrics(cell_dir: Path, fp: str) -> dict[str, Any] | None:
    path = cell_dir / "metrics.json"
    if not (path.is_file() and (cell_dir / "predictions.parquet").is_file()):
        return None
    try:
        m: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return m if m.get("fingerprint") == fp else None


def _summary_row(
    enc: str, layer: str, clf: str, metrics: dict[str, Any], classes: list[str]
) -> dict[str, Any]:
    pooled = {k: metrics["pooled"][k] for k in metric_columns(classes)}
    ba = [f["balanced_accuracy"] for f in metrics["folds"]]
    return {
        "encoder": enc,
        "layer": layer,
        "classifier": clf,
        **pooled,
        "fold_balanced_accuracy_mean": float(np.mean(ba)),
        "fold_balanced_accuracy_std": float(np.std(ba, ddof=1)) if len(ba) > 1 else 0.0,
        "convergence_warnings": int(
            metrics.get("warnings", {}).get("total", {}).get("ConvergenceWarning", 0)
        ),
        "warnings": int(sum(metrics.get("warnings", {}).get("total", {}).values())),
    }


def summary_text(
    table: pd.DataFrame, metrics: tuple[str, ...] = ("balanced_accuracy", "auc_macro")
) -> str:
    """Encoder x layer tables of ``metrics`` per classifier, as printed by the CLI."""
    lines = []
    for metric in metrics:
        for clf, g in table.groupby("classifier", sort=False):
            pivot = g.pivot(index="encoder", columns="layer", values=metric)
            lines.append(f"{metric} (pooled over folds), classifier = {clf}")
            lines.append(pivot.to_string(float_format=lambda v: f"{v:.3f}"))
            lines.append("")
    if "convergence_warnings" in table and table["convergence_warnings"].sum() > 0:
        bad = table[table["convergence_warnings"] > 0]
        names = ", ".join(f"{r.encoder}/{r.layer}/{r.classifier}" for r in bad.itertuples())
        lines.append(
            f"{int(bad['convergence_warnings'].sum())} convergence warnings in {len(bad)} cell(s) "
            f"({names}): their classifiers stopped before converging (see metrics.json; raise "
            "evaluation.logreg.max_iter or lower C, or raise evaluation.mlp.max_epochs)"
        )
    return "\n".join(lines)
