"""Classical baselines on RGB patches and a replica of the original (leaky) thesis protocol.

Texture: Spyridonos et al., "Automatic discrimination of actinic keratoses from clinical
photographs", Comput Biol Med 88 (2017): uniform rotation-invariant LBP histograms of the Y and
I channels of YIQ on 50x50 ROIs (:mod:`skintl.features.lbp`), classified by an RBF SVM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skintl.features.lbp import ColourLBPFeatures, LBPYIQFeatures
from skintl.registry import Registry

BASELINES: Registry[Callable[..., Pipeline]] = Registry("baseline")


def _svm(C: float, gamma: float | str) -> CalibratedClassifierCV:
    """RBF SVC with Platt-scaled probabilities.

    ``SVC(probability=True)`` is deprecated since scikit-learn 1.9; this is its documented
    replacement (one SVC on all rows, sigmoid fitted on 5-fold out-of-fold decision values). The
    internal folds split rows, not patients: only the probability calibration sees that leak.
    """
    svc = SVC(kernel="rbf", C=C, gamma=gamma, class_weight="balanced")
    return CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False)


@BASELINES.register("lbp_yiq_svm")
def lbp_yiq_svm(
    C: float = 1.0,
    gamma: float | str = "scale",
    P: int = 8,
    R: float = 1,
    channels: Sequence[str] = ("Y", "I"),
    rescale: str = "global",
) -> Pipeline:
    """LBP-YIQ histograms -> StandardScaler -> RBF SVC (balanced, Platt probabilities).

    Args:
        C, gamma: SVC hyper-parameters.
        P, R, channels, rescale: as in :class:`LBPYIQFeatures`.
    """
    features = LBPYIQFeatures(P=P, R=R, channels=channels, rescale=rescale)
    return make_pipeline(features, StandardScaler(), _svm(C, gamma))


@BASELINES.register("colour_lbp_svm")
def colour_lbp_svm(
    C: float = 1.0,
    gamma: float | str = "scale",
    P: int = 8,
    R: float = 1,
    channels: Sequence[str] = ("Y", "I"),
    rescale: str = "global",
    colour_space: str = "lab",
    percentiles: Sequence[float] = (10, 50, 90),
) -> Pipeline:
    """Colour statistics + LBP-YIQ -> StandardScaler -> RBF SVC (balanced, Platt probabilities).

    Args:
        C, gamma: SVC hyper-parameters.
        P, R, channels, rescale, colour_space, percentiles: as in :class:`ColourLBPFeatures`.
    """
    features = ColourLBPFeatures(
        P=P,
        R=R,
        channels=channels,
        rescale=rescale,
        colour_space=colour_space,
        percentiles=percentiles,
    )
    return make_pipeline(features, StandardScaler(), _svm(C, gamma))


class ThesisProtocolMLP(ClassifierMixin, BaseEstimator):
    """LEAKY replica of the original MEng thesis protocol; use only to show what the fix changes.

    Faithful to the thesis, including its flaws:

    - one hidden layer of ``round(sqrt(3 * d))`` units, full-batch Adam, many epochs;
    - NO feature normalisation;
    - validation on a random ``val_fraction`` of the training PATCHES, not split by patient, and
      used to pick the best epoch: patches of one patient sit on both sides, so the selected
      epoch is tuned on near-duplicates of its training data (patient leakage);
    - softmax applied twice: the output layer ends in softmax and the loss applies softmax
      again, i.e. ``F.cross_entropy(torch.softmax(logits), y)``, which flattens the gradients.

    ``predict_proba`` returns the single softmax of the logits.

    Args:
        hidden_units: hidden width; ``None`` gives ``round(sqrt(3 * d))``.
        lr: Adam learning rate.
        epochs: number of full-batch steps.
        val_fraction: fraction of training rows held out at random for epoch selection.
        activation: ``"relu"`` or ``"tanh"`` hidden activation.
        seed: seed of the split and the weight initialisation.
    """

    def __init__(
        self,
        hidden_units: int | None = None,
        lr: float = 1e-3,
        epochs: int = 500,
        val_fraction: float = 0.3,
        activation: str = "relu",
        seed: int = 0,
    ) -> None:
        self.hidden_units = hidden_units
        self.lr = lr
        self.epochs = epochs
        self.val_fraction = val_fraction
        self.activation = activation
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> ThesisProtocolMLP:
        """Train on features ``(N, d)`` and labels ``(N,)``; keeps the best-validation epoch."""
        X = np.asarray(X, dtype=np.float32)
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        n, d = X.shape
        self.n_features_in_ = d
        self.hidden_units_ = self.hidden_units or round(math.sqrt(3 * d))
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {self.activation!r}")
        act: nn.Module = nn.ReLU() if self.activation == "relu" else nn.Tanh()
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)  # random rows, NOT grouped by patient: the thesis's leak
        n_val = max(1, round(self.val_fraction * n))
        val, train = perm[:n_val], perm[n_val:]
        xt, xv = torch.from_numpy(X[train]), torch.from_numpy(X[val])
        yt, yv = torch.from_numpy(y_idx[train]), torch.from_numpy(y_idx[val])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = nn.Sequential(
                nn.Linear(d, self.hidden_units_),
                act,
                nn.Linear(self.hidden_units_, len(self.classes_)),
            )
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        best, best_state, self.best_epoch_ = math.inf, None, -1
        history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        for epoch in range(self.epochs):
            loss = F.cross_entropy(torch.softmax(model(xt), dim=1), yt)  # softmax twice (bug)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                val_loss = F.cross_entropy(torch.softmax(model(xv), dim=1), yv).item()
            history["train_loss"].append(loss.item())
            history["val_loss"].append(val_loss)
            if val_loss < best:
                best, self.best_epoch_ = val_loss, epoch
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if best_state is not None:
            model.load_state_dict(best_state)
        self.model_, self.history_ = model.eval(), history
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Features ``(N, d)`` -> class probabilities ``(N, n_classes)`` (one softmax)."""
        check_is_fitted(self, "model_")
        with torch.no_grad():
            logits = self.model_(torch.as_tensor(np.asarray(X), dtype=torch.float32))
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Features ``(N, d)`` -> predicted labels ``(N,)``."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
