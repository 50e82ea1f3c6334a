"""The study's MLP in PyTorch, trained for many cross-validation folds at once.

Each fold has its own standardisation, weights, patient validation split and early stopping,
exactly as one :class:`~skintl.evaluation.classifiers.StudyMLP` per fold; the folds' weights are
stacked, ``(F, d, h)``, so one batched matmul trains all of them and the per-epoch Python loop
runs once per cell instead of once per fold. Adam is elementwise, so stacking changes nothing:
fold f's parameters see only fold f's gradient.

Matches scikit-learn's ``MLPClassifier`` set-up: Glorot-uniform initialisation, ReLU, Adam
(lr 1e-3, betas 0.9/0.999, eps 1e-8), L2 penalty ``alpha`` / 2 per sample, mini-batches of
``batch_size``; early stopping keeps the weights of the epoch with the lowest validation
log-loss and stops after ``patience`` epochs without an improvement of 1e-4.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from skintl.evaluation.classifiers import epoch_cap_warning, hidden_units
from skintl.evaluation.splits import validation_split

MIN_IMPROVEMENT = 1e-4


@dataclass(frozen=True)
class MLPSettings:
    """Hyper-parameters of the study's MLP (the config's ``evaluation.mlp``)."""

    max_epochs: int = 200
    patience: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    alpha: float = 1e-4
    validation_fraction: float = 0.2


@dataclass
class FoldModel:
    """One fold's trained MLP (its best epoch's weights) and its early-stopping record."""

    weights: list[Tensor]  # w1 (d, h), b1 (1, h), w2 (h, K), b2 (1, K)
    mean: Tensor  # (1, d) standardisation of the fold's training rows
    scale: Tensor  # (1, d)
    curve: list[float]  # validation log-loss per epoch
    best_epoch: int  # the epoch (1-based) whose weights these are
    capped: bool = False  # stopped by the epoch cap, not by early stopping

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, d) -> (N, K) class probabilities (one softmax), in class-code order."""
        w1, b1, w2, b2 = self.weights
        x = torch.as_tensor(
            np.require(X, np.float32, ["C", "W"]), dtype=torch.float32, device=w1.device
        )
        x = (x - self.mean) / self.scale
        logits = torch.relu(x @ w1 + b1) @ w2 + b2
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)


def _glorot(rows: int, fan_in: int, fan_out: int, gens: list[torch.Generator]) -> Tensor:
    """scikit-learn's initialisation, one draw per fold's generator: U(-b, b) with
    b = sqrt(6 / (fan_in + fan_out)), for weights and intercepts alike. -> (F, rows, fan_out)"""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.stack([(torch.rand(rows, fan_out, generator=g) * 2 - 1) * bound for g in gens])


class _Stacked(torch.nn.Module):
    """F independent one-hidden-layer MLPs. Input (F, B, d) -> logits (F, B, K)."""

    def __init__(self, d: int, h: int, k: int, gens: list[torch.Generator]) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(_glorot(d, d, h, gens))  # (F, d, h)
        self.b1 = torch.nn.Parameter(_glorot(1, d, h, gens))  # (F, 1, h)
        self.w2 = torch.nn.Parameter(_glorot(h, h, k, gens))  # (F, h, K)
        self.b2 = torch.nn.Parameter(_glorot(1, h, k, gens))  # (F, 1, K)

    def shared(self, x: Tensor, folds: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
        """The same rows x (B, d) through every fold in ``folds``, each standardising them with
        its own mean and scale (F, 1, d) folded into its first layer -> logits (F, B, K)."""
        f, (d, h) = len(folds), self.w1.shape[1:]
        w1 = self.w1[folds] / scale[folds].transpose(1, 2)  # (F, d, h)
        b1 = self.b1[folds] - mean[folds] @ w1  # (F, 1, h)
        hidden = (x @ w1.permute(1, 0, 2).reshape(d, f * h)).view(-1, f, h)  # (B, F, h)
        hidden = torch.relu(hidden.transpose(0, 1) + b1)  # (F, B, h)
        return torch.baddbmm(self.b2[folds], hidden, self.w2[folds])  # (F, B, K)

    def forward(self, x: Tensor, folds: slice | Tensor = slice(None)) -> Tensor:
        hidden = torch.relu(torch.baddbmm(self.b1[folds], x, self.w1[folds]))  # (F, B, h)
        return torch.baddbmm(self.b2[folds], hidden, self.w2[folds])  # (F, B, K)


def _scalers(X: Tensor, train: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Per-fold mean and scale (F, 1, d) of the training rows, as StandardScaler computes them."""
    mean = torch.stack([X[idx].mean(0) for idx in train])[:, None]
    std = torch.stack([X[idx].std(0, unbiased=False) for idx in train])[:, None]
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def fit_folds(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    train: list[np.ndarray],
    settings: MLPSettings,
    seed: int = 0,
    device: str = "cpu",
    fold_ids: list[int] | None = None,
    rows_per_step: int | None = None,
) -> list[FoldModel]:
    """Train one MLP per fold, all at once.

    Every step takes the next ``rows_per_step`` rows of one shuffled stream over all N rows
    (reshuffled each epoch); each fold learns from those of them in its own fitting set, so an
    epoch shows each fold every one of its fitting rows once, in batches of about
    ``batch_size``, and one (rows, d) x (d, F h) product serves every fold.

    Args:
        X: (N, d) features; y: (N,) integer class codes 0..K-1; groups: (N,) patient ids.
        train: row indices of each fold's training set (F arrays); each fold's validation
            patients are drawn from its training patients.
        settings: the MLP's hyper-parameters.
        seed: seeds the validation splits, the initialisation and the shuffling.
        device: where to train ("cpu", "cuda").
        fold_ids: each fold's number (default 0..F-1), which seeds its initialisation.
        rows_per_step: rows of the shared stream per step; default ``batch_size`` scaled by N
            over the median fold's fitting rows. A fold's model depends on its data, the seed
            and this number only, whichever other folds are trained beside it.

    Returns:
        One :class:`FoldModel` per fold, holding its best epoch's weights.
    """
    n_folds, k = len(train), int(y.max()) + 1
    n, d = X.shape
    ids = list(range(n_folds)) if fold_ids is None else fold_ids
    gens = [torch.Generator().manual_seed(seed * 1_000_003 + f) for f in ids]
    stream = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(np.require(X, np.float32, ["C", "W"]), dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    splits = [validation_split(groups[tr], settings.validation_fraction, seed) for tr in train]
    fit = torch.zeros(n, n_folds)  # (N, F) 1 where the row is in the fold's fitting set
    for f, (tr, (fit_idx, _)) in enumerate(zip(train, splits, strict=True)):
        fit[tr[fit_idx], f] = 1.0
    val_rows = [torch.as_tensor(tr[v]) for tr, (_, v) in zip(train, splits, strict=True)]
    mean, scale = _scalers(Xt, train)  # (F, 1, d)
    net = _Stacked(d, hidden_units(d), k, gens)
    Xt, yt, fit, net = Xt.to(device), yt.to(device), fit.to(device), net.to(device)
    mean, scale = mean.to(device), scale.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, eps=1e-8)
    step_rows = rows_per_step or default_rows_per_step(n, fit.sum(0), settings.batch_size)
    best = [math.inf] * n_folds
    best_state: list[list[Tensor]] = [[] for _ in range(n_folds)]
    wait, best_epoch = [0] * n_folds, [0] * n_folds
    curves: list[list[float]] = [[] for _ in range(n_folds)]
    active = list(range(n_folds))
    for _ in range(settings.max_epochs):
        net.train()
        # folds that stopped early are left out: their best weights are already kept
        folds = torch.as_tensor(active, device=device)
        order = torch.randperm(n, generator=stream).to(device)
        for start in range(0, n, step_rows):
            rows = order[start : start + step_rows]
            weight = fit[rows][:, folds].T  # (F_active, B): which rows each fold learns from
            count = weight.sum(1)  # (F_active,)
            logits = net.shared(Xt[rows], folds, mean, scale)  # (F_active, B, K)
            ce = torch.nn.functional.cross_entropy(
                logits.permute(0, 2, 1), yt[rows].expand(len(active), -1), reduction="none"
            )  # (F_active, B)
            l2 = net.w1[folds].square().sum((1, 2)) + net.w2[folds].square().sum((1, 2))
            per_fold = ((weight * ce).sum(1) + 0.5 * settings.alpha * l2) / count.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            per_fold.sum().backward()
            opt.step()
        net.eval()
        for f in list(active):
            v = _log_loss(net, Xt, yt, val_rows[f].to(device), mean, scale, f)
            curves[f].append(v)
            if v < best[f] - MIN_IMPROVEMENT:
                best[f], wait[f], best_epoch[f] = v, 0, len(curves[f])
                best_state[f] = [p[f].detach().clone() for p in net.parameters()]
            else:
                wait[f] += 1
                if wait[f] >= settings.patience:
                    active.remove(f)
        if not active:
            break
    return [
        FoldModel(best_state[f], mean[f], scale[f], curves[f], best_epoch[f], f in active)
        for f in range(n_folds)
    ]


def default_rows_per_step(n: int, fit_counts: Tensor, batch_size: int) -> int:
    """Rows of the shared stream per step so the median fold learns from ``batch_size``."""
    median = float(fit_counts.median())
    return max(1, min(n, round(batch_size * n / max(median, 1.0))))


@torch.no_grad()
def _log_loss(
    net: _Stacked, X: Tensor, y: Tensor, rows: Tensor, mean: Tensor, scale: Tensor, f: int
) -> float:
    x = (X[rows] - mean[f]) / scale[f]
    logits = net(x[None], slice(f, f + 1))[0]
    return float(torch.nn.functional.cross_entropy(logits, y[rows]))


class TorchStudyMLP(ClassifierMixin, BaseEstimator):
    """The study's MLP (:class:`MLPSettings`) with scikit-learn's estimator contract.

    ``fit`` / ``predict_proba`` train and use one MLP (standardisation included: give it raw
    features); :meth:`cross_val_proba` trains every fold of a cross-validation at once, which
    the evaluation stage uses instead of one ``fit`` per fold.

    Args:
        max_epochs, patience, batch_size, learning_rate, validation_fraction: as in
            :class:`MLPSettings` (the config's ``evaluation.mlp``).
        random_state: seed of the validation split, initialisation and shuffling.
        device: "auto" (a CUDA GPU when PyTorch sees one), "cpu" or "cuda[:N]".
        n_jobs: processes sharing the folds on the CPU (joblib's convention; -1 = all cores).
    """

    def __init__(
        self,
        max_epochs: int = 200,
        patience: int = 10,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.2,
        random_state: int = 0,
        device: str = "auto",
        n_jobs: int = -1,
    ) -> None:
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs

    def _settings(self) -> MLPSettings:
        return MLPSettings(
            max_epochs=self.max_epochs,
            patience=self.patience,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            validation_fraction=self.validation_fraction,
        )

    def _device(self) -> str:
        from skintl.device import resolve_device

        return str(resolve_device(self.device))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> Any:
        """Fit on (N, d) features; ``groups`` (N,) patient ids are required."""
        X, y = validate_data(self, X, y)
        if groups is None:
            raise ValueError(
                "TorchStudyMLP.fit needs groups= (patient ids) for its validation split"
            )
        self.classes_, codes = np.unique(y, return_inverse=True)
        train = [np.arange(len(y))]
        self.model_ = fit_folds(
            X, codes, np.asarray(groups), train, self._settings(), self.random_state, self._device()
        )[0]
        self.best_epoch_ = self.model_.best_epoch
        self.validation_loss_curve_ = self.model_.curve
        if self.model_.capped:
            warnings.warn(epoch_cap_warning(self.max_epochs), stacklevel=2)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, d) -> (N, K) probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False)
        return self.model_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def cross_val_proba(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, fold: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Train one MLP per fold (all at once) and predict each fold's test rows.

        Args:
            X: (N, d) features; y: (N,) labels; groups: (N,) patient ids; fold: (N,) fold
                number 0..F-1 of each row's test fold.

        Returns:
            The class labels (K,) and, per fold, the (n_test, K) probabilities of its rows in
            ``np.flatnonzero(fold == k)`` order.
        """
        classes, codes = np.unique(y, return_inverse=True)
        n_folds = int(fold.max()) + 1
        X, groups = np.asarray(X, dtype=np.float32), np.asarray(groups)
        device = self._device()
        # on the CPU, the folds are shared among n_jobs processes of one thread each: threads
        # of one process spin-wait badly when the cores are shared, processes do not
        n_workers = 1 if device != "cpu" else min(n_folds, effective_n_jobs(self.n_jobs))
        chunks = [c.tolist() for c in np.array_split(np.arange(n_folds), n_workers)]
        # one stream step for the whole cross-validation: a fold's model does not depend on
        # the chunk it is trained in
        test_rows = np.bincount(fold, minlength=n_folds)
        fit_rows = torch.as_tensor((len(fold) - test_rows) * (1 - self.validation_fraction))
        step = default_rows_per_step(len(fold), fit_rows, self.batch_size)
        jobs = (
            delayed(_fit_and_predict)(
                X, codes, groups, fold, ids, self._settings(), self.random_state, device, step
            )
            for ids in chunks
        )
        fitted = [p for part in Parallel(n_jobs=n_workers)(jobs) for p in part]
        # warned here, not in the workers, whose warnings would be lost
        for k, (_, capped) in enumerate(fitted):
            if capped:
                warnings.warn(epoch_cap_warning(self.max_epochs, k), stacklevel=2)
        return classes, [proba for proba, _ in fitted]


def _fit_and_predict(
    X: np.ndarray, codes: np.ndarray, groups: np.ndarray, fold: np.ndarray, ids: list[int],
    settings: MLPSettings, seed: int, device: str, rows_per_step: int,
) -> list[tuple[np.ndarray, bool]]:  # fmt: skip
    """Train folds ``ids`` together; each one's test-row probabilities and whether its epoch
    cap stopped it."""
    train = [np.flatnonzero(fold != k) for k in ids]
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        models = fit_folds(X, codes, groups, train, settings, seed, device, ids, rows_per_step)
    finally:
        torch.set_num_threads(threads)
    return [(m.predict_proba(X[fold == k]), m.capped) for k, m in zip(ids, models, strict=True)]
