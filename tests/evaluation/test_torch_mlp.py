"""The study's MLP in PyTorch: same accuracy as scikit-learn's, early stopping, folds at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skintl.evaluation.classifiers import StudyMLP, hidden_units
from skintl.evaluation.torch_mlp import MLPSettings, TorchStudyMLP, fit_folds


def _blobs(
    n: int = 600, d: int = 16, seed: int = 0, gap: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes ``gap`` apart (3: separable) with a per-patient shift, 12 patients."""
    rng = np.random.default_rng(seed)
    y = np.array(["AK", "SK", "healthy"])[rng.integers(0, 3, n)]
    centers = {"AK": 0.0, "SK": gap, "healthy": -gap}
    groups = np.array([f"P{i % 12:02d}" for i in range(n)])
    shift = rng.normal(0, 0.3, (12, d))[np.arange(n) % 12]
    X = rng.normal(size=(n, d)) + np.array([centers[c] for c in y])[:, None] + shift
    return X * 5 + 10, y, groups  # far from standardised: the MLP must standardise itself


# tiny data whose validation loss still falls at the epoch cap: skintl's own warning about it
# (tests/test_single_stages.py checks it) is expected here
@pytest.mark.filterwarnings("ignore:the MLP.*epoch cap:sklearn.exceptions.ConvergenceWarning")
def test_matches_scikit_learn_accuracy_on_separable_data() -> None:
    X, y, groups = _blobs()
    Xt, yt, _ = _blobs(seed=1)
    fast = {"max_epochs": 40, "batch_size": 32, "learning_rate": 1e-2}
    torch_mlp = TorchStudyMLP(**fast, device="cpu").fit(X, y, groups=groups)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sk = make_pipeline(StandardScaler(), StudyMLP(**fast))
    sk.fit(X, y, studymlp__groups=groups)
    acc_torch = (torch_mlp.predict(Xt) == yt).mean()
    acc_sk = (sk.predict(Xt) == yt).mean()
    assert acc_torch > 0.95
    assert abs(acc_torch - acc_sk) < 0.03
    proba = torch_mlp.predict_proba(Xt)
    assert proba.shape == (len(yt), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert list(torch_mlp.classes_) == ["AK", "SK", "healthy"]
    assert torch_mlp.model_.weights[0].shape == (16, hidden_units(16))


def test_stops_early_and_keeps_the_best_epoch() -> None:
    X, y, groups = _blobs(n=300, gap=0.3)  # overlapping classes: the validation loss turns up
    m = TorchStudyMLP(max_epochs=500, patience=3, batch_size=32, device="cpu")
    m.fit(X, y, groups=groups)
    curve = m.validation_loss_curve_
    assert len(curve) < 500  # stopped long before the cap
    # the kept weights are the last epoch that improved by more than 1e-4, and the
    # `patience` epochs after it did not improve on it by 1e-4
    best = m.best_epoch_
    assert len(curve) - best == 3
    assert best == 1 or curve[best - 1] < min(curve[: best - 1])
    assert min(curve[best:]) >= curve[best - 1] - 1e-4


def test_requires_groups() -> None:
    X, y, _ = _blobs(n=60)
    with pytest.raises(ValueError, match="groups"):
        TorchStudyMLP(device="cpu").fit(X, y)


def test_a_fold_never_sees_its_test_labels() -> None:
    """Folds trained together are independent: fold k's model ignores fold k's test rows."""
    X, y, groups = _blobs(n=240, d=8)
    codes = np.unique(y, return_inverse=True)[1]
    patients = np.unique(groups)
    fold = np.searchsorted(patients, groups) % 4  # 3 patients per test fold
    train = [np.flatnonzero(fold != k) for k in range(4)]
    s = MLPSettings(max_epochs=12, patience=5, batch_size=32)
    models = fit_folds(X, codes, groups, train, s, seed=0, rows_per_step=45)
    shuffled = codes.copy()
    te0 = np.flatnonzero(fold == 0)
    shuffled[te0] = np.random.default_rng(0).permutation(shuffled[te0])[::-1]
    again = fit_folds(X, shuffled, groups, train, s, seed=0, rows_per_step=45)
    np.testing.assert_allclose(
        models[0].predict_proba(X[te0]), again[0].predict_proba(X[te0]), atol=1e-5
    )
    # fold 1 trains on fold 0's rows, so the changed labels change it
    te1 = np.flatnonzero(fold == 1)
    assert not np.allclose(models[1].predict_proba(X[te1]), again[1].predict_proba(X[te1]))
    # and a fold trained alone equals the same fold trained beside others
    alone = fit_folds(X, codes, groups, train[:1], s, seed=0, rows_per_step=45)
    np.testing.assert_allclose(
        alone[0].predict_proba(X[te0]), models[0].predict_proba(X[te0]), atol=1e-5
    )


# tiny data whose validation loss still falls at the epoch cap: skintl's own warning about it
# (tests/test_single_stages.py checks it) is expected here
@pytest.mark.filterwarnings("ignore:the MLP.*epoch cap:sklearn.exceptions.ConvergenceWarning")
def test_cross_val_proba_covers_every_row_once() -> None:
    X, y, groups = _blobs(n=300)
    fold = np.searchsorted(np.unique(groups), groups) % 3
    m = TorchStudyMLP(max_epochs=40, batch_size=32, learning_rate=1e-2, device="cpu")
    classes, probas = m.cross_val_proba(X, y, groups, fold)
    assert list(classes) == ["AK", "SK", "healthy"]
    assert [len(p) for p in probas] == [int((fold == k).sum()) for k in range(3)]
    pred = np.empty(len(y), dtype=object)
    for k, p in enumerate(probas):
        pred[fold == k] = classes[p.argmax(1)]
    assert (pred == y).mean() > 0.95


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu_accuracy() -> None:
    X, y, groups = _blobs()
    cpu = TorchStudyMLP(batch_size=32, device="cpu").fit(X, y, groups=groups)
    gpu = TorchStudyMLP(batch_size=32, device="cuda").fit(X, y, groups=groups)
    assert abs((cpu.predict(X) == y).mean() - (gpu.predict(X) == y).mean()) < 0.02
