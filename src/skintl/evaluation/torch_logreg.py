"""Multinomial logistic regression in PyTorch, fitted for every cross-validation fold at once.

Each fold solves scikit-learn's problem for ``make_pipeline(StandardScaler(),
LogisticRegression(C, class_weight))`` on its own training rows: features standardised with the
fold's mean and standard deviation, then

    min_{W, b}  (1 / S) sum_i s_i CE(x_i W + b, y_i) + ||W||^2 / (2 C S),   S = sum_i s_i,

with ``s_i`` the class weight of row i (1, or "balanced" from the fold's own class counts) and
no penalty on the intercepts. The objective is strictly convex in W, so its solution does not
depend on the solver. All folds' problems are summed into one, whose gradient for fold f is fold
f's own gradient, and solved by L-BFGS (history 10, strong-Wolfe line search, as scipy's
L-BFGS-B in scikit-learn) until every fold's largest gradient entry is at most ``tol``
(scikit-learn's ``gtol``). One pass over the features then serves every fold:
``X @ V`` with V the folds' weights side by side ``(d, F K)``, which is where the time goes on
thesis-sized studies (one memory-bound pass per fold and iteration in scikit-learn).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

HISTORY = 10  # scipy's L-BFGS-B default (m)
MAX_BACKTRACKS = 10  # step halvings before a problem is stopped (float precision reached)


def fold_scalers(X: Tensor, train: Tensor) -> tuple[Tensor, Tensor]:
    """StandardScaler's mean and scale of each fold's training rows, in float64.

    Args:
        X: (N, d) features; train: (N, F) bool, row i in fold f's training set.

    Returns:
        mean (F, d) and scale (F, d), a zero standard deviation replaced by 1.
    """
    w = train.to(torch.float64)
    n = w.sum(0)[:, None]  # (F, 1)
    x = X.to(torch.float64)
    mean = (w.T @ x) / n
    var = (w.T @ x.square()) / n - mean.square()
    std = var.clamp_min(0).sqrt()
    return mean, torch.where(std > 1e-12 * mean.abs().clamp_min(1), std, torch.ones_like(std))


@dataclass
class _Folds:
    """F logistic regressions in standardised coordinates: ``W`` (F, d, K), ``b`` (F, K)."""

    W: Tensor
    b: Tensor
    mean: Tensor  # (F, d) float64, each fold's StandardScaler
    scale: Tensor  # (F, d) float64


def _standardising(mean: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """(1 / scale, mean / scale) in float32: what :func:`_fold_logits` needs of the scalers."""
    return (1.0 / scale).to(torch.float32), (mean / scale).to(torch.float32)


def _fold_logits(X: Tensor, W: Tensor, b: Tensor, inv_scale: Tensor, shift: Tensor) -> Tensor:
    """(N, d) -> (N, F, K) with weights W (F, d, K), b (F, K) in each fold's standardised
    coordinates (inv_scale, shift (F, d) from :func:`_standardising`)."""
    f, d, k = W.shape
    # ((x - m) / s) W = x (W / s) - (m / s) W: the features are never copied per fold
    V = W * inv_scale[:, :, None]  # (F, d, K)
    offset = b - torch.einsum("fd,fdk->fk", shift, W)  # (F, K)
    return (X @ V.permute(1, 0, 2).reshape(d, f * k)).view(-1, f, k) + offset


def _sample_weights(codes: Tensor, train: Tensor, k: int, balanced: bool) -> Tensor:
    """(N, F) weight of row i in fold f's loss: 0 off the fold's training rows."""
    w = train.to(torch.float32)
    if not balanced:
        return w
    onehot = torch.nn.functional.one_hot(codes, k).to(torch.float32)  # (N, K)
    counts = onehot.T @ w  # (K, F)
    if bool((counts == 0).any()):
        f = int((counts == 0).any(0).nonzero()[0])
        raise ValueError(f"fold {f}'s training rows lack a class: balanced weights undefined")
    per_class = w.sum(0) / (k * counts)  # (K, F): n_f / (K n_fk), as compute_class_weight
    return w * per_class[codes]


def fit_folds(
    X: np.ndarray,
    codes: np.ndarray,
    train: np.ndarray,
    C: float = 1.0,
    balanced: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "cpu",
) -> tuple[_Folds, np.ndarray]:
    """Fit one regression per fold, all at once.

    Args:
        X: (N, d) features; codes: (N,) class codes 0..K-1 (every class present somewhere).
        train: (N, F) bool, row i in fold f's training set.
        C, balanced, max_iter, tol: scikit-learn's ``C``, ``class_weight="balanced"``,
            ``max_iter`` (L-BFGS iterations of the joint problem) and ``tol`` (gtol).

    Returns:
        The fitted folds and (F,) bool: fold f reached ``tol`` (otherwise a ConvergenceWarning
        names it).
    """
    k = int(codes.max()) + 1
    Xt = torch.as_tensor(np.require(X, np.float32, ["C", "W"]), dtype=torch.float32, device=device)
    mask = torch.as_tensor(train, device=device)
    yt = torch.as_tensor(codes, dtype=torch.long, device=device)
    mean, scale = fold_scalers(Xt, mask)
    n_folds, d = mean.shape
    inv_scale, shift = _standardising(mean, scale)
    sw = _sample_weights(yt, mask, k, balanced)  # (N, F)
    total = sw.sum(0).double()  # (F,) = S per fold
    target = yt[:, None, None].expand(-1, n_folds, 1)

    def objective(theta: Tensor) -> tuple[Tensor, Tensor]:
        """(F, P) parameters -> each fold's loss (F,) float64 and gradient (F, P)."""
        theta = theta.detach().requires_grad_(True)
        W, b = theta[:, : d * k].view(n_folds, d, k), theta[:, d * k :]
        logp = torch.log_softmax(_fold_logits(Xt, W, b, inv_scale, shift), dim=2)
        data = -(sw * logp.gather(2, target)[..., 0]).double().sum(0) / total
        loss = data + W.square().sum(dim=(1, 2)).double() / (2 * C * total)
        (grad,) = torch.autograd.grad(loss.sum(), theta)
        return loss.detach(), grad

    start = torch.zeros(n_folds, d * k + k, device=device)  # W then b, as scikit-learn
    theta, grad = batched_lbfgs(objective, start, max_iter, tol)
    model = _Folds(theta[:, : d * k].reshape(n_folds, d, k), theta[:, d * k :], mean, scale)
    worst = grad.abs().amax(dim=1)
    converged = (worst <= tol).cpu().numpy()
    for f in np.flatnonzero(~converged):
        warning = ConvergenceWarning(
            f"logistic regression of fold {f} did not converge in {max_iter} L-BFGS iterations "
            f"(largest gradient {float(worst[f]):.2g} > tol {tol}); raise evaluation.logreg."
            "max_iter or lower evaluation.logreg.C"
        )
        warning.fold = int(f)  # counted on its fold
        warnings.warn(warning, stacklevel=2)
    return model, converged


def batched_lbfgs(
    fun: Callable[[Tensor], tuple[Tensor, Tensor]],
    theta: Tensor,
    max_iter: int,
    tol: float,
    history: int = HISTORY,
) -> tuple[Tensor, Tensor]:
    """Minimise F independent functions at once with L-BFGS (Nocedal and Wright, alg. 7.4/7.5).

    Each problem keeps its own curvature history and step length (Armijo backtracking from
    the full step), and stops when its largest gradient entry is at most ``tol``; one call of
    ``fun`` evaluates every problem, so the cost of an iteration is one batched pass.

    Args:
        fun: (F, P) parameters -> (F,) values and (F, P) gradients.
        theta: (F, P) starting point.

    Returns:
        The final parameters (F, P) and their gradients (F, P).
    """
    f, g = fun(theta)
    hist: list[tuple[Tensor, Tensor, Tensor]] = []  # (s, y, rho), oldest first
    gamma = torch.ones_like(f, dtype=g.dtype)
    stalled = torch.zeros_like(f, dtype=torch.bool)
    for it in range(max_iter):
        active = (g.abs().amax(dim=1) > tol) & ~stalled
        if not bool(active.any()):
            break
        d = _two_loop(g, hist, gamma)
        gtd = (g * d).sum(1)
        d = torch.where((gtd < 0)[:, None], d, -g)  # not a descent direction: steepest descent
        gtd = (g * d).sum(1)
        # first iteration: the gradient's scale is unknown, so take a short first step
        t = torch.ones_like(gtd) if it else (1.0 / g.abs().sum(1)).clamp(max=1.0)
        t = torch.where(active, t, torch.zeros_like(t))
        # sufficient decrease (Armijo), up to the values' rounding: near a float32 optimum
        # the decrease drowns in it, and a strict test would stop short of tol
        slack = float(torch.finfo(theta.dtype).eps) * f.abs()
        for _ in range(MAX_BACKTRACKS):
            f_new, g_new = fun(theta + t[:, None] * d)
            ok = (f_new <= f + 1e-4 * t.double() * gtd.double() + slack) | ~active
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t / 2)
        stalled |= ~ok  # no decrease found: float precision reached; stop this problem
        t = torch.where(ok, t, torch.zeros_like(t))
        s = t[:, None] * d
        y = torch.where(ok[:, None], g_new - g, torch.zeros_like(g))
        theta = theta + s
        f, g = torch.where(ok, f_new, f), torch.where(ok[:, None], g_new, g)
        sy, yy = (s * y).sum(1), (y * y).sum(1)
        curved = sy > float(torch.finfo(sy.dtype).eps) * yy  # else the pair is skipped
        rho = torch.where(curved, 1.0 / torch.where(curved, sy, 1.0), 0.0)
        gamma = torch.where(curved, sy / torch.where(curved, yy, 1.0), gamma)
        hist = [*hist[-(history - 1) :], (s, y, rho)]
    return theta, g


def _two_loop(g: Tensor, hist: list[tuple[Tensor, Tensor, Tensor]], gamma: Tensor) -> Tensor:
    """L-BFGS direction -H g of every problem from its (s, y, rho) history (rho 0: skipped)."""
    q = -g
    alphas = []
    for s, y, rho in reversed(hist):
        a = rho * (s * q).sum(1)
        q = q - a[:, None] * y
        alphas.append(a)
    r = gamma[:, None] * q
    for (s, y, rho), a in zip(hist, reversed(alphas), strict=True):
        r = r + s * (a - rho * (y * r).sum(1))[:, None]
    return r


class TorchLogisticRegression(ClassifierMixin, BaseEstimator):
    """Standardisation + multinomial L2 logistic regression (scikit-learn's objective).

    Give it raw features; ``fit`` / ``predict_proba`` fit and use one regression,
    :meth:`cross_val_proba` fits every fold of a cross-validation at once (the evaluation
    stage's path).

    Args:
        C: inverse L2 strength; class_weight: None or "balanced"; max_iter, tol: L-BFGS's
            iteration cap and gradient tolerance; device: "auto", "cpu" or "cuda[:N]".
    """

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
        device: str = "auto",
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def _fit(self, X: np.ndarray, codes: np.ndarray, train: np.ndarray) -> tuple[_Folds, Any]:
        from skintl.device import resolve_device

        return fit_folds(
            X, codes, train, self.C, self.class_weight == "balanced", self.max_iter, self.tol,
            str(resolve_device(self.device)),
        )  # fmt: skip

    def fit(self, X: np.ndarray, y: np.ndarray) -> TorchLogisticRegression:
        X, y = validate_data(self, X, y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        model, _ = self._fit(X, codes, np.ones((len(y), 1), bool))
        self.mean_, self.scale_ = (t[0].cpu().numpy() for t in (model.mean, model.scale))
        self.coef_ = model.W[0].T.cpu().numpy().astype(np.float64)  # (K, d), standardised
        self.intercept_ = model.b[0].cpu().numpy().astype(np.float64)  # (K,)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, d) -> (N, K) probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        z = ((X - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        return np.asarray(softmax(z, axis=1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def cross_val_proba(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, fold: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Fit one regression per fold (all at once) and predict each fold's test rows.

        Args:
            X: (N, d) features; y: (N,) labels; groups: (N,) patient ids (unused: no
                validation split); fold: (N,) test fold 0..F-1 of each row.

        Returns:
            The class labels (K,) and, per fold, the (n_test, K) probabilities of its rows in
            ``np.flatnonzero(fold == k)`` order.
        """
        classes, codes = np.unique(y, return_inverse=True)
        n_folds = int(fold.max()) + 1
        train = fold[:, None] != np.arange(n_folds)[None, :]
        model, _ = self._fit(np.asarray(X, np.float32), codes, train)
        return classes, [_proba(model, X[fold == k], k) for k in range(n_folds)]


@torch.no_grad()
def _proba(model: _Folds, X: np.ndarray, f: int) -> np.ndarray:
    """Fold f's (N, K) probabilities of the rows X (N, d)."""
    x = torch.as_tensor(
        np.require(X, np.float32, ["C", "W"]), dtype=torch.float32, device=model.W.device
    )
    one = slice(f, f + 1)
    inv_scale, shift = _standardising(model.mean[one], model.scale[one])
    logits = _fold_logits(x, model.W[one], model.b[one], inv_scale, shift)[:, 0]
    return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)
