"""Metrics equal scikit-learn's on a fixed example."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from skintl.evaluation.metrics import classification_metrics

CLASSES = ["AK", "healthy", "SK"]
Y = np.array(["AK", "AK", "AK", "healthy", "healthy", "healthy", "healthy", "SK", "SK", "SK"])
P = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.5, 0.1, 0.4],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.6, 0.3, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.2, 0.7],
        [0.3, 0.3, 0.4],
        [0.2, 0.5, 0.3],
    ]
)


def test_metrics_equal_sklearn() -> None:
    m = classification_metrics(Y, P, CLASSES)
    pred = np.array(CLASSES)[P.argmax(1)]
    assert m["accuracy"] == np.mean(pred == Y)
    assert math.isclose(m["balanced_accuracy"], balanced_accuracy_score(Y, pred))
    assert math.isclose(m["macro_f1"], f1_score(Y, pred, average="macro"))
    assert m["confusion"] == confusion_matrix(Y, pred, labels=CLASSES).tolist()
    sens = recall_score(Y, pred, labels=CLASSES, average=None)
    for k, c in enumerate(CLASSES):
        assert math.isclose(m[f"sensitivity_{c}"], sens[k])
        # specificity of c = recall of "not c"
        spec = recall_score(Y != c, pred != c)
        assert math.isclose(m[f"specificity_{c}"], spec)
        assert math.isclose(m[f"auc_{c}"], roc_auc_score(Y == c, P[:, k]))
    order = np.argsort(CLASSES)  # scikit-learn wants sorted labels
    labels = sorted(CLASSES)
    macro = roc_auc_score(Y, P[:, order], multi_class="ovr", average="macro", labels=labels)
    assert math.isclose(m["auc_macro"], macro)


def test_auc_of_a_class_absent_from_the_fold_is_nan() -> None:
    keep = Y != "SK"
    m = classification_metrics(Y[keep], P[keep], CLASSES)
    assert math.isnan(m["auc_SK"]) and math.isnan(m["sensitivity_SK"])
    assert math.isclose(m["auc_macro"], np.mean([m["auc_AK"], m["auc_healthy"]]))


def test_balanced_accuracy_of_a_fold_missing_a_class_equals_sklearn_without_warning() -> None:
    import warnings

    y = Y[:7]  # AK and healthy only, and the last prediction says SK
    p = np.vstack([P[:6], [[0.1, 0.2, 0.7]]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(y, np.asarray(CLASSES)[p.argmax(axis=1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, p, CLASSES)
    assert math.isclose(m["balanced_accuracy"], expected)
