"""Classifiers on cached features, with scikit-learn's estimator contract.

Each registered factory returns an estimator whose ``fit`` accepts ``groups=`` (patient ids)
through :func:`fit_grouped`, so that any validation split inside training is made by patient.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.validation import check_is_fitted, validate_data

from skintl.config import EvaluationConfig
from skintl.evaluation.baselines import ThesisProtocolMLP
from skintl.evaluation.splits import validation_split
from skintl.registry import Registry

log = logging.getLogger(__name__)

ClassifierFactory = Callable[[EvaluationConfig, int], BaseEstimator]
CLASSIFIERS: Registry[ClassifierFactory] = Registry("classifier")


def hidden_units(d: int) -> int:
    """The study's hidden-layer size for ``d`` input features: round(sqrt(3 d))."""
    return round(math.sqrt(3 * d))


def epoch_cap_warning(max_epochs: int, fold: int | None = None) -> ConvergenceWarning:
    """The warning of an MLP that early stopping had not stopped after ``max_epochs`` epochs:
    like a solver out of iterations, it may still have been improving. With ``fold``, the
    evaluation counts it on that fold."""
    where = "" if fold is None else f" of fold {fold}"
    warning = ConvergenceWarning(
        f"the MLP{where} reached its epoch cap ({max_epochs}) before early stopping ended it; "
        "raise evaluation.mlp.max_epochs"
    )
    if fold is not None:
        warning.fold = fold
    return warning


class StudyMLP(ClassifierMixin, BaseEstimator):
    """The study's MLP: one hidden layer of round(sqrt(3 d)) ReLU units, Adam, single softmax.

    Early stopping watches the log-loss on a validation split made BY PATIENT inside the
    training data (the original protocol split patches at random, leaking patients).

    Args:
        max_epochs: upper bound on epochs; patience: epochs without improvement before stopping.
        batch_size, learning_rate: Adam's mini-batch size and step (the study: 1e-3).
        validation_fraction: fraction of training patients held out for early stopping.
        random_state: seed of the split, the initialisation and the shuffling.
    """

    def __init__(
        self,
        max_epochs: int = 200,
        patience: int = 10,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.2,
        random_state: int = 0,
    ) -> None:
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> StudyMLP:
        """Fit on (N, d) features; ``groups`` (N,) patient ids are required."""
        X, y = validate_data(self, X, y)
        if groups is None:
            raise ValueError("StudyMLP.fit needs groups= (patient ids) for its validation split")
        self.classes_ = np.unique(y)
        fit_idx, val_idx = validation_split(
            np.asarray(groups), self.validation_fraction, self.random_state
        )
        mlp = MLPClassifier(
            hidden_layer_sizes=(hidden_units(X.shape[1]),),
            solver="adam",
            learning_rate_init=self.learning_rate,
            batch_size=min(self.batch_size, len(fit_idx)),
            random_state=self.random_state,
        )
        best, best_state, wait, curve, best_epoch = math.inf, None, 0, [], 0
        for _ in range(self.max_epochs):
            mlp.partial_fit(X[fit_idx], y[fit_idx], classes=self.classes_)
            loss = log_loss(y[val_idx], mlp.predict_proba(X[val_idx]), labels=self.classes_)
            curve.append(loss)
            if loss < best - 1e-4:
                best, wait, best_epoch = loss, 0, len(curve)
                best_state = (copy.deepcopy(mlp.coefs_), copy.deepcopy(mlp.intercepts_))
            else:
                wait += 1
                if wait >= self.patience:
                    break
        else:
            warnings.warn(epoch_cap_warning(self.max_epochs), stacklevel=2)
        assert best_state is not None
        mlp.coefs_, mlp.intercepts_ = best_state
        self.mlp_ = mlp
        self.validation_loss_curve_ = curve
        self.best_epoch_ = best_epoch  # the epoch whose weights are kept
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, d) -> (N, K) probabilities (one softmax), columns in ``classes_`` order."""
        check_is_fitted(self, "mlp_")
        X = validate_data(self, X, reset=False)
        return np.asarray(self.mlp_.predict_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


@CLASSIFIERS.register("mlp")
def _mlp(cfg: EvaluationConfig, seed: int) -> BaseEstimator:
    m = cfg.mlp
    if m.implementation == "torch":
        from skintl.evaluation.torch_mlp import TorchStudyMLP

        return TorchStudyMLP(
            m.max_epochs, m.patience, m.batch_size, m.learning_rate,
            cfg.splits.validation_fraction, seed, m.device, cfg.n_jobs,
        )  # fmt: skip
    return make_pipeline(
        StandardScaler(),
        StudyMLP(
            m.max_epochs,
            m.patience,
            m.batch_size,
            m.learning_rate,
            cfg.splits.validation_fraction,
            seed,
        ),
    )


@CLASSIFIERS.register("logreg")
def _logreg(cfg: EvaluationConfig, seed: int) -> BaseEstimator:
    # multinomial (softmax) logistic regression on standardised features; L2 strength C
    c = cfg.logreg
    if c.implementation == "torch":
        from skintl.evaluation.torch_logreg import TorchLogisticRegression

        return TorchLogisticRegression(c.C, c.class_weight, c.max_iter, device=c.device)
    lr = LogisticRegression(
        C=c.C, max_iter=c.max_iter, class_weight=c.class_weight, random_state=seed,
    )  # fmt: skip
    return make_pipeline(StandardScaler(), lr)


class SoftmaxSVC(ClassifierMixin, BaseEstimator):
    """SVM whose ``predict_proba`` is the softmax of its one-vs-rest decision values.

    One SVC fit per fold (Platt calibration would fit five more and split patches, not
    patients). The scores rank like the decision values, which is what AUC needs; they are not
    calibrated probabilities. ``class_weight="balanced"`` as in the baselines' usual set-up.
    """

    def __init__(
        self, C: float = 1.0, gamma: float | str = "scale", kernel: str = "rbf", seed: int = 0
    ) -> None:
        self.C = C
        self.gamma = gamma
        self.kernel = kernel
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> SoftmaxSVC:
        X, y = validate_data(self, X, y)
        svm: Any
        if self.kernel == "linear":  # liblinear: one-vs-rest, scales to many patches
            svm = LinearSVC(C=self.C, class_weight="balanced", random_state=self.seed)
        else:
            svm = SVC(
                kernel=self.kernel,
                C=self.C,
                gamma=self.gamma,
                class_weight="balanced",
                decision_function_shape="ovr",
            )
        self.svc_ = svm.fit(X, y)
        self.classes_ = self.svc_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "svc_")
        X = validate_data(self, X, reset=False)
        d = np.asarray(self.svc_.decision_function(X))
        if d.ndim == 1:  # two classes: one decision value for classes_[1]
            d = np.stack([-d, d], axis=1)
        return np.asarray(softmax(d, axis=1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


@CLASSIFIERS.register("svm_rbf")
def _svm_rbf(cfg: EvaluationConfig, seed: int) -> BaseEstimator:
    return make_pipeline(StandardScaler(), SoftmaxSVC())


@CLASSIFIERS.register("svm_linear")
def _svm_linear(cfg: EvaluationConfig, seed: int) -> BaseEstimator:
    return make_pipeline(StandardScaler(), SoftmaxSVC(C=0.01, kernel="linear", seed=seed))


@CLASSIFIERS.register("knn")
def _knn(cfg: EvaluationConfig, seed: int) -> BaseEstimator:
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15, weights="distance"))


@CLASSIFIERS.register("thesis_mlp")
def _thesis_mlp(cfg: EvaluationConfig, seed: int) -> BaseEstimator:
    # LEAKY replica of the original protocol (no normalisation, random-patch validation,
    # double softmax): only to show what the protocol fix changes
    return ThesisProtocolMLP(seed=seed)


def fit_grouped(est: BaseEstimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Any:
    """Fit ``est`` passing ``groups`` to the final step when its ``fit`` accepts them."""
    final = est.steps[-1] if isinstance(est, Pipeline) else None
    target = final[1] if final else est
    if "groups" not in inspect.signature(target.fit).parameters:
        return est.fit(X, y)
    key = f"{final[0]}__groups" if final else "groups"
    return est.fit(X, y, **{key: groups})
