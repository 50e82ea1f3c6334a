"""Patient-grouped splits: outer test folds and the inner validation split.

No patient ever appears in two of train / validation / test of one fold.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
)

Split = tuple[np.ndarray, np.ndarray]


class SplitError(ValueError):
    """A split that cannot be made; the message says which setting to change."""


def outer_splits(
    kind: str, n_splits: int, y: np.ndarray, groups: np.ndarray, seed: int = 0
) -> list[Split]:
    """(train_idx, test_idx) per fold, grouped by patient.

    Args:
        kind: ``leave_one_patient_out``, ``group_kfold`` or ``stratified_group_kfold``
            (folds balanced in class proportions, shuffled by ``seed``).
        n_splits: number of folds (ignored by leave-one-patient-out).
        y: (N,) labels; groups: (N,) patient ids.
    """
    n_groups = len(np.unique(groups))
    if kind == "leave_one_patient_out":
        splitter = LeaveOneGroupOut()
    elif n_splits > n_groups:
        raise SplitError(
            f"{n_splits} folds need at least {n_splits} patients, but the data has {n_groups}; "
            "lower evaluation.splits.n_splits or use leave_one_patient_out"
        )
    elif kind == "group_kfold":
        splitter = GroupKFold(n_splits=n_splits)
    elif kind == "stratified_group_kfold":
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        raise SplitError(f"unknown split kind {kind!r}")
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]


def validation_split(groups: np.ndarray, fraction: float, seed: int = 0) -> Split:
    """(fit_idx, val_idx) of a training set, holding out ``fraction`` of its patients."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise SplitError("a validation split by patient needs at least 2 training patients")
    # ceil(fraction x patients), as scikit-learn rounds a fractional test_size, but at least
    # one patient on each side
    n_val = min(max(1, math.ceil(fraction * n_groups)), n_groups - 1)
    gss = GroupShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    fit_idx, val_idx = next(gss.split(np.zeros(len(groups)), groups=groups))
    return fit_idx, val_idx


def check_training_classes(splits: list[Split], y: np.ndarray, classes: list[str]) -> None:
    """Every training fold must contain every class; else a clear error before any training."""
    for k, (tr, _) in enumerate(splits):
        missing = sorted(set(classes) - set(np.unique(y[tr]).tolist()))
        if missing:
            raise SplitError(
                f"fold {k}: the training patients have no {missing} patches; use fewer folds "
                "(evaluation.splits.n_splits), or more patients with those lesions"
            )
