"""The batched PyTorch logistic regression solves scikit-learn's problem, fold by fold."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skintl.evaluation.torch_logreg import TorchLogisticRegression, batched_lbfgs


def _data(n: int = 600, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three overlapping classes (imbalanced), features on different scales, 6 folds."""
    rng = np.random.default_rng(seed)
    y = rng.choice(["AK", "SK", "healthy"], n, p=[0.3, 0.1, 0.6])
    centres = {"AK": rng.normal(0, 1, d), "SK": rng.normal(0, 1, d), "healthy": np.zeros(d)}
    X = np.stack([centres[c] for c in y]) + rng.normal(0, 1.5, (n, d))
    X = (X * rng.uniform(0.1, 20, d) + rng.normal(0, 5, d)).astype(np.float32)
    return X, y, np.arange(n) % 6


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_probabilities_equal_sklearns(class_weight: str | None) -> None:
    X, y, _ = _data()
    ref = make_pipeline(
        StandardScaler(), LogisticRegression(C=0.1, class_weight=class_weight, tol=1e-10)
    ).fit(X, y)
    est = TorchLogisticRegression(C=0.1, class_weight=class_weight, tol=1e-5, device="cpu")
    est.fit(X, y)
    assert list(est.classes_) == list(ref.classes_)
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-3)
    np.testing.assert_allclose(est.coef_, ref[-1].coef_, atol=2e-3)


def test_folds_at_once_equal_one_fit_per_fold() -> None:
    X, y, fold = _data(seed=1)
    est = TorchLogisticRegression(C=0.1, class_weight="balanced", tol=1e-5, device="cpu")
    classes, probas = est.cross_val_proba(X, y, np.arange(len(y)), fold)
    for k in range(fold.max() + 1):
        one = TorchLogisticRegression(C=0.1, class_weight="balanced", tol=1e-5, device="cpu")
        one.fit(X[fold != k], y[fold != k])
        assert list(one.classes_) == list(classes)
        np.testing.assert_allclose(probas[k], one.predict_proba(X[fold == k]), atol=1e-3)


def test_a_fold_that_does_not_converge_is_warned_about() -> None:
    X, y, fold = _data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TorchLogisticRegression(C=1000.0, max_iter=2, device="cpu").cross_val_proba(
            X, y, np.arange(len(y)), fold
        )
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert len(messages) == 6
    assert all("max_iter" in m for m in messages)


def test_balanced_weights_need_every_class_in_a_folds_training_rows() -> None:
    X, y, fold = _data()
    fold = np.where(y == "SK", 0, fold)  # fold 0's training rows have no SK
    with pytest.raises(ValueError, match="fold 0's training rows lack a class"):
        TorchLogisticRegression(class_weight="balanced", device="cpu").cross_val_proba(
            X, y, np.arange(len(y)), fold
        )


def test_batched_lbfgs_reaches_each_quadratics_minimum() -> None:
    """Independent quadratics 0.5 x'A x - b'x of very different conditioning: x* = A^-1 b."""
    gen = torch.Generator().manual_seed(0)
    mats, rhs = [], []
    for cond in (1.0, 1e2, 1e4):
        q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
        mats.append(q @ torch.diag(torch.logspace(0, np.log10(cond), 8, dtype=torch.float64)) @ q.T)
        rhs.append(torch.randn(8, generator=gen, dtype=torch.float64))
    A, b = torch.stack(mats), torch.stack(rhs)

    def fun(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ax = torch.einsum("fij,fj->fi", A, x)
        return 0.5 * (x * ax).sum(1) - (b * x).sum(1), ax - b

    x, g = batched_lbfgs(fun, torch.zeros(3, 8, dtype=torch.float64), 1000, 1e-6)
    assert g.abs().max() <= 1e-6
    # |x - x*| <= |g| / smallest eigenvalue (1)
    np.testing.assert_allclose(x, torch.linalg.solve(A, b), rtol=0, atol=1e-5)
