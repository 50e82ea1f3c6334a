"""Scanning classifiers as plain arrays: standardisation, affine layers with ReLU, softmax.

The classifiers that make sense for scanning (``logreg``, ``mlp``, ``svm_linear``) are all this
shape once fitted, so a bundle stores their arrays, never a pickled estimator. A two-class
sigmoid ``p = sigmoid(z)`` becomes the softmax of ``(0, z)``, and a two-class SVM's
``softmax(-d, d)`` is kept as two rows, so one ``predict_proba`` serves every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import softmax

from skintl.names import SCAN_CLASSIFIERS


class HeadError(ValueError):
    """A classifier that cannot become a scan head."""


@dataclass
class Head:
    """A fitted classifier as arrays.

    Attributes:
        mean, scale: (d,) standardisation; weights: [(out, in)] per layer; biases: [(out,)];
        classes: names of the output columns.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    classes: list[str]

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, d) features -> (N, K) probabilities in ``classes`` order."""
        A, c = self.first_layer()
        return self.proba_from_first(np.asarray(X, np.float64) @ A.T + c)

    def first_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The standardisation and first layer as one affine map of raw features:
        (out, d) matrix A and (out,) offset c with ``A x + c`` the first pre-activation.

        Affine maps commute with averaging, so a window's first pre-activation is the mean of
        ``A f + c`` over its cells: dense scanning pools ``out`` channels instead of d."""
        A = self.weights[0] / self.scale
        return A, self.biases[0] - A @ self.mean

    def proba_from_first(self, z: np.ndarray) -> np.ndarray:
        """(N, out) first pre-activations -> (N, K) probabilities in ``classes`` order."""
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            z = np.maximum(z, 0.0) @ w.T + b
        return np.asarray(softmax(z, axis=1), np.float32)

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"weight{i}"], out[f"bias{i}"] = w, b
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], classes: list[str]) -> Head:
        n = sum(1 for k in t if k.startswith("weight"))
        expected = {"mean", "scale"} | {f"{p}{i}" for i in range(n) for p in ("weight", "bias")}
        if set(t) != expected or n == 0:
            raise HeadError(f"classifier arrays {sorted(t)} are not a head (expected {expected})")
        head = cls(t["mean"], t["scale"], [t[f"weight{i}"] for i in range(n)],
                   [t[f"bias{i}"] for i in range(n)], classes)  # fmt: skip
        dims = [head.n_features] + [int(w.shape[0]) for w in head.weights]
        for i, w in enumerate(head.weights):
            if w.shape != (dims[i + 1], dims[i]) or head.biases[i].shape != (dims[i + 1],):
                raise HeadError(f"classifier layer {i} has shape {tuple(w.shape)}, expected "
                                f"({dims[i + 1]}, {dims[i]})")  # fmt: skip
        if dims[-1] != len(classes):
            raise HeadError(f"classifier has {dims[-1]} outputs but {len(classes)} class names")
        return head


def _two_rows(w: np.ndarray, b: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """A single-output layer as two softmax rows: (0, z) for a sigmoid, (-d, d) for an SVM."""
    if w.shape[0] != 1:
        return w, b
    other = -w if symmetric else np.zeros_like(w)
    return np.vstack([other, w]), np.concatenate([-b if symmetric else np.zeros_like(b), b])


def head_from_estimator(model: Any, name: str) -> Head:
    """A fitted ``CLASSIFIERS[name]`` pipeline (StandardScaler + final step) as a :class:`Head`."""
    if name not in SCAN_CLASSIFIERS:
        raise HeadError(
            f"classifier {name!r} cannot be used for scanning; use one of "
            f"{', '.join(SCAN_CLASSIFIERS)} (they become plain arrays, no pickle)"
        )
    if hasattr(model, "model_"):  # the torch MLP standardises inside: no pipeline
        return _torch_mlp_head(model)
    if hasattr(model, "mean_"):  # so does the torch logistic regression
        return Head(model.mean_, model.scale_, [model.coef_], [model.intercept_],
                    [str(c) for c in model.classes_])  # fmt: skip
    scaler, final = model.steps[0][1], model.steps[-1][1]
    if name == "logreg":
        ws, bs = [final.coef_], [final.intercept_]
    elif name == "svm_linear":
        ws, bs = [final.svc_.coef_], [final.svc_.intercept_]
    else:
        if final.mlp_.activation != "relu":
            raise HeadError(f"mlp activation {final.mlp_.activation!r} is not supported")
        ws, bs = [c.T for c in final.mlp_.coefs_], list(final.mlp_.intercepts_)
    ws[-1], bs[-1] = _two_rows(ws[-1], bs[-1], symmetric=name == "svm_linear")
    f64 = [np.asarray(a, np.float64) for a in (scaler.mean_, scaler.scale_)]
    return Head(f64[0], f64[1], [np.asarray(w, np.float64) for w in ws],
                [np.asarray(b, np.float64) for b in bs],
                [str(c) for c in final.classes_])  # fmt: skip


def _torch_mlp_head(model: Any) -> Head:
    """A fitted :class:`~skintl.evaluation.torch_mlp.TorchStudyMLP` as a :class:`Head`."""
    w1, b1, w2, b2 = (t.detach().cpu().numpy().astype(np.float64) for t in model.model_.weights)
    mean = model.model_.mean.detach().cpu().numpy().astype(np.float64).reshape(-1)
    scale = model.model_.scale.detach().cpu().numpy().astype(np.float64).reshape(-1)
    return Head(mean, scale, [w1.T, w2.T], [b1.reshape(-1), b2.reshape(-1)],
                [str(c) for c in model.classes_])  # fmt: skip
