"""The report stage: tables, figures and a static ``<run>/report/index.html``.

The page opens from disk: relative links only, inline CSS, no scripts, no web fonts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from skintl.evaluation.stats import plot_critical_difference
from skintl.io import write_text
from skintl.report import figures
from skintl.report.context import protocol_context, run_warnings, table_context
from skintl.report.ink import ink_context
from skintl.report.stage import (
    REPORT_DIR,
    build_stats_tables,
    cached_embedding,
    feature_meta,
    feature_sets,
    load_predictions,
    read_config,
)
from skintl.report.stats_tables import Cell, StatsTables, best_cells, slug
from skintl.report.subgroups import subgroup_context, subgroup_tables

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
FIGURES = "figures"
EMBED_MAX_POINTS = 1500


def _figure(rel: str, caption: str) -> dict[str, str]:
    return {"src": f"{FIGURES}/{rel}", "caption": caption}


def per_patient_figures(
    tables: StatsTables, best: dict[str, Cell], encoders: list[str], fig_dir: Path
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Mean/min/max over patients per encoder x layer; per-patient bars of the best cells.

    Returns:
        One summary figure per classifier of the ``encoders`` (plus one for all other cells,
        the baselines), and the figure of per-patient bars.
    """
    summary = []
    pp = tables.per_patient
    ours = pp["encoder"].isin(encoders)
    for clf, g in pp[ours].groupby("classifier", sort=False):
        name = f"per_patient_{slug(str(clf))}.png"
        figures.per_patient_summary(g, fig_dir / name, title=f"classifier {clf}")
        summary.append(_figure(name, f"Classifier {clf}"))
    if (~ours).any():
        rest = pp[~ours]
        label = rest["encoder"] + "/" + rest["layer"] + "\n" + rest["classifier"]
        rest = rest.assign(encoder=label, layer="")
        figures.per_patient_summary(rest, fig_dir / "per_patient_baselines.png", title="baselines")
        summary.append(_figure("per_patient_baselines.png", "Baselines"))
    panels = {}
    for cell in best.values():
        sel = (pp.encoder == cell.encoder) & (pp.layer == cell.layer)
        panels[cell.name] = pp[sel & (pp.classifier == cell.classifier)]
    figures.per_patient_bars(panels, fig_dir / "per_patient_best.png")
    caption = "Balanced accuracy of each patient for the best cell of each encoder."
    return summary, _figure("per_patient_best.png", caption)


def best_cell_figures(
    run_dir: Path, best: dict[str, Cell], classes: list[str], fig_dir: Path
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Confusion matrix and one-vs-rest ROC curves of the best cell of each encoder."""
    confusion, roc = [], []
    for cell in best.values():
        pred = load_predictions(run_dir, cell)
        name = f"confusion_{cell.slug}.png"
        y_true, y_pred = pred["y_true"].to_numpy(), pred["y_pred"].to_numpy()
        figures.confusion_plot(y_true, y_pred, classes, fig_dir / name, cell.name)
        confusion.append(_figure(name, cell.name))
        name = f"roc_{cell.slug}.png"
        figures.roc_plot(pred, classes, fig_dir / name, cell.name)
        roc.append(_figure(name, cell.name))
    return confusion, roc


def embedding_figures(
    run_dir: Path,
    cfg: dict[str, Any],
    labels: np.ndarray,
    classes: list[str],
    seed: int,
    fig_dir: Path,
) -> list[dict[str, str]]:
    """A t-SNE panel per layer with a feature file, one figure per encoder (or descriptor).

    Args:
        labels: ``(N,)`` class of every patch, in the row order of the feature files.
    """
    params = {"method": "tsne", "seed": seed, "max_points": EMBED_MAX_POINTS}

    def embed(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return figures.embed(X, seed=seed, max_points=EMBED_MAX_POINTS)

    out = []
    for enc, layers in feature_sets(run_dir, cfg).items():
        panels = {}
        for layer in layers:
            got = cached_embedding(run_dir, enc, layer, embed, params, n_rows=len(labels))
            if got is not None:
                rows, coords = got
                panels[layer] = (coords, labels[rows])
        if panels:
            n = len(next(iter(panels.values()))[1])
            name = f"embedding_{slug(enc)}.png"
            title = f"{enc}: t-SNE of the features ({n} of {len(labels)} patches, seed {seed})"
            figures.embedding_plot(panels, classes, fig_dir / name, title)
            out.append(_figure(name, title))
    return out


def _render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # names, ids and labels come from outside: always shown as text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)


def _scan_context(run_dir: Path) -> dict[str, Any] | None:
    """The whole-photo summary of the scan stage (``scan/summary.csv``), its paired mode
    differences (``scan/mode_differences.csv``) and a gallery of the best, median and worst
    overlays by Dice (``scan/photos.csv``), when there are some."""
    from skintl.scan.summary import gallery

    path = run_dir / "scan" / "summary.csv"
    if not path.is_file():
        return None
    summary = pd.read_csv(path)
    for col in ("median", "median_ci_low", "median_ci_high"):  # a summary from before medians
        summary[col] = summary[col] if col in summary else math.nan
    rows = summary.to_dict("records")
    diffs = run_dir / "scan" / "mode_differences.csv"
    differences = pd.read_csv(diffs).to_dict("records") if diffs.is_file() else []
    photos = run_dir / "scan" / "photos.csv"
    picks = gallery(pd.read_csv(photos)) if photos.is_file() else []
    for p in picks:
        p["src"] = f"../scan/{p['mode']}/{p['stem']}_overlay.png"
    modes = sorted({str(r["mode"]) for r in rows})
    tables = _mode_metric_tables(rows, modes)
    return {"rows": rows, "modes": modes, "tables": tables, "differences": differences,
            "gallery": picks, "files": _scan_files(run_dir)}  # fmt: skip


def _mode_metric_tables(rows: list[dict[Any, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """The summary rows as one metric x mode table per target class (cells: the row or None)."""
    tables = []
    for cls in dict.fromkeys(str(r["target_class"]) for r in rows):
        sub = [r for r in rows if str(r["target_class"]) == cls]
        cell = {(r["metric"], str(r["mode"])): r for r in sub}
        n = {m: max((int(r["n_photos"]) for r in sub if str(r["mode"]) == m), default=0)
             for m in modes}  # fmt: skip
        metrics = [
            {"metric": metric, "cells": [cell.get((metric, m)) for m in modes]}
            for metric in dict.fromkeys(r["metric"] for r in sub)
        ]
        tables.append({"target_class": cls, "modes": modes, "n_photos": n, "metrics": metrics})
    return tables


def _scan_files(run_dir: Path) -> list[str]:
    """The scan stage's CSVs, as links relative to the report folder."""
    scan = run_dir / "scan"
    found = [*sorted(scan.glob("*.csv")), *sorted(scan.glob("*/scan_metrics.csv"))]
    return [f"../scan/{p.relative_to(scan).as_posix()}" for p in found]


def write_report(
    run_dir: Path, n_boot: int = 1000, seed: int | None = None, alpha: float = 0.05
) -> Path:
    """Write ``<run>/report/index.html`` with its PNGs and CSV tables; return the HTML's path.

    Args:
        run_dir: a run directory of ``skintl study`` (config, patches, features, evaluation).
        n_boot: patient-bootstrap resamples per cell for the CIs.
        seed: seed of the bootstrap, subsample and t-SNE (None: the study's seed).
        alpha: 1 - CI coverage, and the level of the Friedman / Holm tests.

    Per-cell tables and embeddings are cached in ``<run>/report/cache/``, so a rerun only
    recomputes what changed.
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    seed = int(cfg.get("seed", 0)) if seed is None else seed
    fig_dir = run_dir / REPORT_DIR / FIGURES
    index = pd.read_parquet(run_dir / "patches" / "index.parquet")
    labels = index["class"].to_numpy()
    classes = [str(c) for c in cfg.get("classes") or sorted(set(labels))]

    tables = build_stats_tables(run_dir, n_boot=n_boot, alpha=alpha, seed=seed)
    best = best_cells(tables.main)
    encoders = [str(e["name"]) for e in (cfg.get("features") or {}).get("encoders", [])]
    figs: dict[str, Any] = {}
    figs["per_patient"], figs["per_patient_best"] = per_patient_figures(
        tables, best, encoders, fig_dir
    )
    figs["confusion"], figs["roc"] = best_cell_figures(run_dir, best, classes, fig_dir)
    figs["cd"] = None
    if tables.friedman is not None:
        plot_critical_difference(tables.friedman, fig_dir / "critical_difference.png")
        figs["cd"] = _figure("critical_difference.png", "Critical-difference diagram")
    figs["embeddings"] = embedding_figures(run_dir, cfg, labels, classes, seed, fig_dir)
    figs["patches"] = None
    if (run_dir / "patches" / "patches.npy").is_file():
        patches = np.load(run_dir / "patches" / "patches.npy", mmap_mode="r")
        figures.patch_mosaic(patches, labels, classes, fig_dir / "patches.png", seed=seed)
        figs["patches"] = _figure("patches.png", "Random example patches of each class")

    sets = feature_sets(run_dir, cfg)
    metas = {e: feature_meta(run_dir, e, sets[e][0]) if e in sets else None for e in encoders}
    others = tables.main[~tables.main["encoder"].isin(encoders)]
    params = {"n_boot": n_boot, "alpha": alpha, "seed": seed}
    sub = subgroup_tables(run_dir, cfg, tables.main, classes, params)
    subgroups = None if sub is None else subgroup_context(*sub, classes)
    context = {
        "title": f"skintl report: {cfg.get('name', run_dir.name)}",
        "warnings": run_warnings(run_dir),
        "protocol": protocol_context(run_dir, cfg, index, metas, n_boot, alpha, seed),
        "baselines": [f"{e}/{la}/{c}" for e, la, c in others.iloc[:, :3].itertuples(index=False)],
        "tables": table_context(tables),
        "figures": figs,
        "csv_files": sorted([*tables.csv_tables(), *(subgroups["csv"] if subgroups else [])]),
        "subgroups": subgroups,
        "scan": _scan_context(run_dir),
        "ink": ink_context(run_dir, cfg, fig_dir, seed),
    }
    path = run_dir / REPORT_DIR / "index.html"
    write_text(_render(context), path)
    log.info("report written to %s", path)
    return path
