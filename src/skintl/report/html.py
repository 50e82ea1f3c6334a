"""The report stage: tables, figures and a static ``<run>/report/index.html``.

The page opens from disk: relative links only, inline CSS, no scripts, no web fonts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from skintl.evaluation.stats import plot_critical_difference
from skintl.io import write_text
from skintl.report import figures
from skintl.report.context import protocol_context, table_context
from skintl.report.stage import (
    REPORT_DIR,
    build_stats_tables,
    cached_embedding,
    feature_meta,
    load_predictions,
    read_config,
)
from skintl.report.stats_tables import NO_LAYER, Cell, StatsTables, best_cells, slug

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
FIGURES = "figures"
EMBED_MAX_POINTS = 1500


def _figure(rel: str, caption: str) -> dict[str, str]:
    return {"src": f"{FIGURES}/{rel}", "caption": caption}


def per_patient_figures(
    tables: StatsTables, best: dict[str, Cell], fig_dir: Path
) -> list[dict[str, str]]:
    """Per classifier: mean/min/max over patients per encoder x layer; bars of the best cells."""
    out = []
    pp = tables.per_patient
    for clf, g in pp.groupby("classifier", sort=False):
        name = f"per_patient_{slug(str(clf))}.png"
        figures.per_patient_summary(g, fig_dir / name, title=f"classifier {clf}")
        caption = (
            f"Per-patient balanced accuracy, classifier {clf}: mean over patients (bar) and "
            "min..max (whisker) per encoder and layer."
        )
        out.append(_figure(name, caption))
    panels = {}
    for cell in best.values():
        sel = (pp.encoder == cell.encoder) & (pp.layer == cell.layer)
        panels[cell.name] = pp[sel & (pp.classifier == cell.classifier)]
    figures.per_patient_bars(panels, fig_dir / "per_patient_best.png")
    caption = "Balanced accuracy of each patient for the best cell of each encoder."
    out.append(_figure("per_patient_best.png", caption))
    return out


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
    index: pd.DataFrame,
    classes: list[str],
    seed: int,
    fig_dir: Path,
) -> list[dict[str, str]]:
    """A t-SNE panel per layer with features, one figure per encoder."""
    feats = cfg.get("features") or {}
    layers = [str(layer) for layer in feats.get("layers", [])]
    labels = index["class"].to_numpy()
    params = {"method": "tsne", "seed": seed, "max_points": EMBED_MAX_POINTS}
    out = []
    for enc in [str(e["name"]) for e in feats.get("encoders", [])]:
        panels = {}
        for layer in layers:
            got = cached_embedding(
                run_dir,
                enc,
                layer,
                lambda X: figures.embed(X, seed=seed, max_points=EMBED_MAX_POINTS),
                params,
            )
            if got is not None:
                rows, coords = got
                panels[layer] = (coords, labels[rows])
        if panels:
            n = len(panels[next(iter(panels))][1])
            name = f"embedding_{slug(enc)}.png"
            title = f"{enc}: t-SNE of pooled features ({n} of {len(labels)} patches, seed {seed})"
            figures.embedding_plot(panels, classes, fig_dir / name, title)
            out.append(_figure(name, title))
    return out


def _render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)


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
    out = run_dir / REPORT_DIR
    fig_dir = out / FIGURES
    index = pd.read_parquet(run_dir / "patches" / "index.parquet")
    classes = [str(c) for c in cfg.get("classes") or sorted(index["class"].unique())]

    tables = build_stats_tables(run_dir, n_boot=n_boot, alpha=alpha, seed=seed)
    best = best_cells(tables.main)
    figs: dict[str, Any] = {"per_patient": per_patient_figures(tables, best, fig_dir)}
    figs["confusion"], figs["roc"] = best_cell_figures(run_dir, best, classes, fig_dir)
    figs["cd"] = None
    if tables.friedman is not None:
        plot_critical_difference(tables.friedman, fig_dir / "critical_difference.png")
        figs["cd"] = _figure("critical_difference.png", "Critical-difference diagram")
    figs["embeddings"] = embedding_figures(run_dir, cfg, index, classes, seed, fig_dir)
    figs["patches"] = None
    patches_npy = run_dir / "patches" / "patches.npy"
    if patches_npy.is_file():
        patches = np.load(patches_npy, mmap_mode="r")
        labels = index["class"].to_numpy()
        figures.patch_mosaic(patches, labels, classes, fig_dir / "patches.png", seed=seed)
        figs["patches"] = _figure("patches.png", "Random example patches of each class")

    metas = {
        str(e["name"]): feature_meta(run_dir, str(e["name"]), str(layer))
        for e in (cfg.get("features") or {}).get("encoders", [])
        for layer in (cfg.get("features") or {}).get("layers", [])[:1]
    }
    context = {
        "title": f"skintl report: {cfg.get('name', run_dir.name)}",
        "protocol": protocol_context(run_dir, cfg, index, metas, n_boot, alpha, seed),
        "tables": table_context(tables),
        "figures": figs,
        "csv_files": sorted(tables.csv_tables()),
        "has_baseline": bool((tables.main["layer"] == NO_LAYER).any()),
    }
    html = _render(context)
    path = out / "index.html"
    write_text(html, path)
    log.info("report written to %s", path)
    return path
