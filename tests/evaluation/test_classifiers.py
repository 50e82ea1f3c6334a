"""The study's MLP: hidden-size rule, patient-grouped early stopping, sklearn contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from skintl.config import EvaluationConfig
from skintl.evaluation.classifiers import CLASSIFIERS, StudyMLP, fit_grouped, hidden_units


@pytest.mark.parametrize(
    ("d", "h"), [(64, 14), (256, 28), (512, 39), (1024, 55), (2048, 78), (3, 3), (12, 6)]
)
def test_hidden_size_rule(d: int, h: int) -> None:
    assert hidden_units(d) == h


def _blobs(n: int = 120, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array(["AK", "SK", "healthy"])[rng.integers(0, 3, n)]
    centers = {"AK": 0.0, "SK": 2.0, "healthy": -2.0}
    X = rng.normal(size=(n, d)) + np.array([centers[c] for c in y])[:, None]
    groups = np.array([f"P{i % 6}" for i in range(n)])
    return X, y, groups


# tiny data whose validation loss still falls at the epoch cap: skintl's own warning about it
# (tests/test_single_stages.py checks it) is expected here
@pytest.mark.filterwarnings("ignore:the MLP.*epoch cap:sklearn.exceptions.ConvergenceWarning")
def test_mlp_fits_with_the_rule_and_learns() -> None:
    X, y, groups = _blobs()
    m = StudyMLP(max_epochs=200, patience=10, batch_size=16).fit(X, y, groups=groups)
    assert m.mlp_.coefs_[0].shape == (12, hidden_units(12))
    assert m.mlp_.out_activation_ == "softmax"  # one softmax, in the output layer only
    proba = m.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert (m.predict(X) == y).mean() > 0.9
    assert 1 <= m.best_epoch_ <= len(m.validation_loss_curve_)


def test_mlp_requires_groups() -> None:
    X, y, _ = _blobs()
    with pytest.raises(ValueError, match="groups"):
        StudyMLP().fit(X, y)


# tiny data whose validation loss still falls at the epoch cap: skintl's own warning about it
# (tests/test_single_stages.py checks it) is expected here
@pytest.mark.filterwarnings("ignore:the MLP.*epoch cap:sklearn.exceptions.ConvergenceWarning")
def test_registered_classifiers_get_groups_and_clone() -> None:
    X, y, groups = _blobs()
    for name in ("mlp", "logreg", "svm_linear", "svm_rbf", "knn"):
        est = clone(CLASSIFIERS.get(name)(EvaluationConfig(), 0))
        fitted = fit_grouped(est, X, y, groups)
        assert list(fitted.classes_) == sorted(set(y))
    valid = "valid names: knn, logreg, mlp, svm_linear, svm_rbf, thesis_mlp"
    with pytest.raises(KeyError, match=valid):
        CLASSIFIERS.get("svm-typo")


def test_mlp_best_epoch_is_the_epoch_whose_weights_are_kept() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    y = np.array(["AK", "SK", "healthy"])[rng.integers(0, 3, 300)]  # no signal: loss turns up
    groups = np.array([f"P{i % 6}" for i in range(300)])
    m = StudyMLP(max_epochs=300, patience=3, batch_size=32).fit(X, y, groups=groups)
    curve, best = m.validation_loss_curve_, m.best_epoch_
    assert len(curve) - best == 3  # stopped `patience` epochs after the kept epoch
    assert min(curve[best:]) >= curve[best - 1] - 1e-4
