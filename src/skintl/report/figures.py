"""Report figures as PNGs (matplotlib's object API with the Agg canvas: no pyplot, no GUI).

Every function takes tables or arrays, draws one figure and writes it atomically to ``path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import auc, confusion_matrix, roc_curve
from sklearn.preprocessing import StandardScaler

from skintl.io import atomic_path

DPI = 110
_PALETTE = ("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per class, in class order (AK red, healthy green, SK blue by default)."""
    return {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(classes)}


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return path


def legend_outside(ax: Axes, **kw: Any) -> Legend:
    """The axes' legend right of its plot area, where it covers no bar (the saved PNG grows to
    hold it: ``bbox_inches="tight"``)."""
    return ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                     borderaxespad=0.0, **kw)  # fmt: skip


def per_patient_summary(
    per_patient: pd.DataFrame, path: Path, metric: str = "balanced_accuracy", title: str = ""
) -> Path:
    """Mean (bar) and min..max (whisker) over patients of ``metric`` per encoder x layer.

    Args:
        per_patient: one row per (encoder, layer, patient) of one classifier, with ``metric``.
    """
    enc_order = list(dict.fromkeys(per_patient["encoder"]))
    layers = list(dict.fromkeys(per_patient["layer"]))
    stats = per_patient.groupby(["encoder", "layer"], sort=False)[metric].agg(
        ["mean", "min", "max"]
    )
    fig = Figure(figsize=(max(5.0, 1.2 * len(enc_order) * max(1, len(layers)) / 2), 3.4))
    ax = fig.add_subplot()
    width = 0.8 / len(layers)
    for j, layer in enumerate(layers):
        xs, mean, lo, hi = [], [], [], []
        for i, enc in enumerate(enc_order):
            if (enc, layer) in stats.index:
                s = stats.loc[(enc, layer)]
                xs.append(i + (j - (len(layers) - 1) / 2) * width)
                mean.append(s["mean"])
                lo.append(s["mean"] - s["min"])
                hi.append(s["max"] - s["mean"])
        ax.bar(xs, mean, width * 0.9, yerr=[lo, hi], capsize=3, label=layer, color=f"C{j}")
    ax.set_xticks(range(len(enc_order)), enc_order, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"per-patient {metric.replace('_', ' ')}", fontsize=8)
    if len(layers) > 1:
        legend_outside(ax, title="layer", title_fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def per_patient_bars(
    panels: Mapping[str, pd.DataFrame], path: Path, metric: str = "balanced_accuracy"
) -> Path:
    """One panel per cell (name -> its per-patient table): ``metric`` of each patient, mean line."""
    fig = Figure(figsize=(8, 1.9 * len(panels) + 0.4), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, table) in zip(axes, panels.items(), strict=True):
        t = table.sort_values("patient_id")
        x = np.arange(len(t))
        ax.bar(x, t[metric], color="#4c72b0", width=0.8)
        ax.axhline(t[metric].mean(), color="k", lw=1, ls="--", label=f"mean {t[metric].mean():.3f}")
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        if len(t) <= 60:
            ax.set_xticks(x, t["patient_id"].astype(str), rotation=90, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(t)} patients", fontsize=8)
        legend_outside(ax)
    return _save(fig, path)


def confusion_plot(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Confusion matrix normalised by row (true class), each cell annotated with its count."""
    cm = confusion_matrix(y_true, y_pred, labels=list(classes))
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = Figure(figsize=(3.6, 3.3), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if norm[i, j] > 0.6 else "black"
            label = f"{norm[i, j]:.2f}\n({cm[i, j]})"
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color=color)
    ticks = range(len(classes))
    ax.set_xticks(ticks, list(classes), fontsize=8)
    ax.set_yticks(ticks, list(classes), fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def roc_plot(pred: pd.DataFrame, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """One-vs-rest ROC curve of each class from the ``prob_<class>`` columns, AUC in the legend."""
    fig = Figure(figsize=(3.6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    colors = class_colors(classes)
    for c in classes:
        pos = (pred["y_true"] == c).to_numpy()
        if 0 < pos.sum() < len(pos):
            fpr, tpr, _ = roc_curve(pos, pred[f"prob_{c}"].to_numpy())
            ax.plot(fpr, tpr, color=colors[c], lw=1.5, label=f"{c} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate", fontsize=8)
    ax.set_ylabel("true positive rate", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def embed(
    X: np.ndarray, seed: int = 0, max_points: int = 1500, pca_dims: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of standardised features on a seeded subsample.

    Args:
        X: ``(N, C)`` features.
        seed: seeds the subsample, PCA and t-SNE.
        max_points: at most this many rows (sorted indices drawn without replacement).
        pca_dims: PCA to this many dimensions first (the usual t-SNE speed-up).

    Returns:
        ``rows`` ``(M,)`` indices into ``X`` and ``coords`` ``(M, 2)``.
    """
    n = len(X)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    Z = StandardScaler().fit_transform(np.asarray(X[rows], dtype=np.float64))
    k = min(pca_dims, Z.shape[1], len(rows))
    if k < Z.shape[1]:
        Z = PCA(n_components=k, random_state=seed).fit_transform(Z)
    perplexity = float(min(30.0, max(2.0, (len(rows) - 1) / 3)))
    # 500 iterations: the layout is settled for the <= 1500 points drawn, at half the cost
    tsne = TSNE(
        2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=500, random_state=seed
    )
    return rows, tsne.fit_transform(Z)


def embedding_plot(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
    path: Path,
    title: str = "",
) -> Path:
    """A row of scatter plots, one per layer: ``layer -> (coords (M, 2), labels (M,))``."""
    n = len(panels)
    fig = Figure(figsize=(2.6 * n + 0.2, 2.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    colors = class_colors(classes)
    for ax, (layer, (coords, labels)) in zip(axes, panels.items(), strict=True):
        size = 4.0 if len(coords) > 500 else 10.0
        for c in classes:
            m = labels == c
            ax.scatter(*coords[m].T, s=size, alpha=0.6, color=colors[c], label=c, linewidths=0)
        ax.set_title(layer, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=len(classes),
        fontsize=8,
        markerscale=2.5,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def patch_mosaic(
    patches: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    path: Path,
    per_class: int = 10,
    seed: int = 0,
) -> Path:
    """A row of seeded random example patches ``(N, S, S, 3)`` uint8 for each class."""
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(0.8 * per_class + 0.8, 0.85 * len(classes)), layout="constrained")
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for i, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        pick = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(pick):
                ax.imshow(patches[pick[j]], interpolation="nearest")
        axes[i, 0].set_ylabel(f"{c}\n({len(idx)})", fontsize=8, rotation=0, ha="right", va="center")
    return _save(fig, path)


def ink_mosaic(
    photos: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    titles: Sequence[str],
    path: Path,
    cols: int = 4,
) -> Path:
    """Thumbnails of photos ``(H, W, 3)`` uint8, each beside a copy with its ink mask
    ``(H, W)`` bool painted green."""
    rows = -(-len(photos) // cols)
    fig = Figure(figsize=(2.6 * cols, 1.5 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, rgb, mask, title in zip(axes.flat, photos, masks, titles, strict=False):
        painted = rgb.copy()
        painted[mask] = (0, 255, 0)
        ax.imshow(np.concatenate([rgb, painted], axis=1), interpolation="nearest")
        ax.set_title(title, fontsize=6)
    return _save(fig, path)
