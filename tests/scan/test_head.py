"""Scan heads (arrays) give exactly the fitted classifiers' probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from skintl.config import EvaluationConfig
from skintl.evaluation.classifiers import CLASSIFIERS, fit_grouped
from skintl.scan.head import Head, HeadError, head_from_estimator


def _data(n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array(["AK", "healthy", "SK"][:n_classes])[rng.integers(0, n_classes, 120)]
    X = rng.normal(size=(120, 6)) + (y == "AK")[:, None] * 1.5 + 3.0
    return X, y, np.repeat(np.arange(12), 10)


# tiny data whose validation loss still falls at the epoch cap: skintl's own warning about it
# (tests/test_single_stages.py checks it) is expected here
@pytest.mark.filterwarnings("ignore:the MLP.*epoch cap:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", ["logreg", "mlp", "svm_linear"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_head_equals_estimator(name: str, n_classes: int) -> None:
    X, y, groups = _data(n_classes)
    cfg = EvaluationConfig.model_validate({"mlp": {"max_epochs": 5}})
    model = fit_grouped(CLASSIFIERS.get(name)(cfg, 0), X, y, groups)
    head = head_from_estimator(model, name)
    back = Head.from_tensors(head.tensors(), head.classes)
    np.testing.assert_allclose(back.predict_proba(X), model.predict_proba(X), atol=1e-5)
    assert back.classes == list(model.classes_)


def test_other_classifiers_are_refused() -> None:
    X, y, groups = _data(3)
    model = fit_grouped(CLASSIFIERS.get("knn")(EvaluationConfig(), 0), X, y, groups)
    with pytest.raises(HeadError, match=r"'knn' cannot be used for scanning.*logreg, mlp"):
        head_from_estimator(model, "knn")


def test_arrays_of_the_wrong_shape_are_refused() -> None:
    X, y, groups = _data(3)
    model = fit_grouped(CLASSIFIERS.get("logreg")(EvaluationConfig(), 0), X, y, groups)
    t = head_from_estimator(model, "logreg").tensors()
    t["weight0"] = t["weight0"][:, :4]
    with pytest.raises(HeadError, match="layer 0 has shape"):
        Head.from_tensors(t, ["AK", "healthy", "SK"])
