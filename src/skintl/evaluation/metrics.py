"""Classification metrics of a fold or of pooled predictions (scikit-learn underneath)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class sensitivity/specificity/AUC, confusion.

    Args:
        y_true: (N,) class names.
        proba: (N, K) probabilities, columns in ``classes`` order.
        classes: the K class names.

    Returns:
        A flat dict; one-vs-rest AUC of a class absent from ``y_true`` (or the only one present)
        is NaN, and ``auc_macro`` averages the classes where it is defined.
    """
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    out: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(cm),
        "macro_f1": f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0),
        "confusion": cm.tolist(),
    }
    aucs = []
    for k, c in enumerate(classes):
        tp, fn = cm[k, k], cm[k].sum() - cm[k, k]
        fp = cm[:, k].sum() - cm[k, k]
        tn = cm.sum() - tp - fn - fp
        out[f"sensitivity_{c}"] = tp / (tp + fn) if tp + fn else float("nan")
        out[f"specificity_{c}"] = tn / (tn + fp) if tn + fp else float("nan")
        pos = y_true == c
        auc = roc_auc_score(pos, proba[:, k]) if 0 < pos.sum() < len(pos) else float("nan")
        out[f"auc_{c}"] = auc
        aucs.append(auc)
    out["auc_macro"] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (rows of the (K, K) confusion matrix
    with support): scikit-learn's ``balanced_accuracy_score``, without its warning for a fold
    whose predictions name a class its patients lack (expected with one patient per fold)."""
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else math.nan


def metric_columns(classes: list[str]) -> list[str]:
    """The scalar metrics of :func:`classification_metrics`, in table order."""
    per_class = [f"{m}_{c}" for m in ("sensitivity", "specificity", "auc") for c in classes]
    return ["n", "accuracy", "balanced_accuracy", "macro_f1", "auc_macro", *per_class]
