"""No split path ever puts one patient in two of train / validation / test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skintl.evaluation.splits import (
    SplitError,
    check_training_classes,
    outer_splits,
    validation_split,
)

KINDS = ["leave_one_patient_out", "group_kfold", "stratified_group_kfold"]


@st.composite
def grouped_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n_patients = draw(st.integers(3, 12))
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_patients, max_size=n_patients))
    groups = np.repeat([f"P{i}" for i in range(n_patients)], sizes)
    y = np.array(draw(st.lists(st.sampled_from("ABC"), min_size=len(groups), max_size=len(groups))))
    n_splits = draw(st.integers(2, n_patients))
    return y, groups, n_splits


# hypothesis draws classes rarer than the folds: scikit-learn's stratification warning is
# about that drawn data, not about the split rule tested here
@pytest.mark.filterwarnings("ignore:The least populated class in y:UserWarning")
@settings(max_examples=60, deadline=None)
@given(
    data=grouped_data(),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 5),
    fraction=st.floats(0.1, 0.6),
)
def test_no_patient_in_two_roles(
    data: tuple[np.ndarray, np.ndarray, int], kind: str, seed: int, fraction: float
) -> None:
    y, groups, n_splits = data
    splits = outer_splits(kind, n_splits, y, groups, seed)
    tested = np.concatenate([te for _, te in splits])
    assert sorted(tested.tolist()) == list(range(len(y)))  # every patch tested exactly once
    for tr, te in splits:
        assert not set(groups[tr]) & set(groups[te])
        if len(np.unique(groups[tr])) < 2:
            continue
        fit, val = validation_split(groups[tr], fraction, seed)
        assert len(fit) and len(val) and len(fit) + len(val) == len(tr)
        fit_p, val_p = set(groups[tr][fit]), set(groups[tr][val])
        assert not fit_p & val_p
        assert not (fit_p | val_p) & set(groups[te])


def test_too_many_folds_is_a_clear_error() -> None:
    groups = np.array(["a", "a", "b", "c"])
    with pytest.raises(SplitError, match="data has 3"):
        outer_splits("group_kfold", 4, np.zeros(4), groups)


def test_empty_class_in_a_training_fold_is_reported() -> None:
    y = np.array(["AK", "AK", "SK", "healthy", "healthy"])
    groups = np.array(["p1", "p1", "p2", "p3", "p3"])
    splits = outer_splits("leave_one_patient_out", 0, y, groups)
    with pytest.raises(SplitError, match=r"fold 0: the training patients have no \['AK'\]"):
        check_training_classes(splits, y, ["AK", "healthy", "SK"])
