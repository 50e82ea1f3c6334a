"""Tests for the classical baselines and the leaky thesis-protocol MLP."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from skimage.color import rgb2yiq
from skimage.feature import local_binary_pattern
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from skintl.evaluation.baselines import BASELINES, ThesisProtocolMLP, lbp_yiq_svm
from skintl.features.lbp import _RGB2YIQ, _YIQ_HIGH, _YIQ_LOW, ColourLBPFeatures, LBPYIQFeatures

P = 8  # uniform LBP with 8 neighbours: bins 0..8 uniform, bin 9 non-uniform


def _constant(n: int = 2, size: int = 10, rgb: tuple[int, int, int] = (120, 80, 60)) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (n, size, size, 3)).copy()


def _checkerboard(size: int = 10) -> np.ndarray:
    board = (np.indices((size, size)).sum(0) % 2 * 255).astype(np.uint8)
    return np.repeat(board[None, :, :, None], 3, axis=3)  # (1, size, size, 3) black/white


@pytest.mark.parametrize("rescale", ["global", "patch"])
def test_constant_patch_puts_all_mass_in_bin_P(rescale: str) -> None:
    feats = LBPYIQFeatures(rescale=rescale).fit_transform(_constant())
    expected = np.zeros(P + 2)
    expected[P] = 1.0  # every neighbour >= centre: the all-ones uniform pattern
    np.testing.assert_array_equal(feats, np.tile(expected, (2, 2)))


def test_checkerboard_splits_Y_between_bins_0_and_P() -> None:
    feats = LBPYIQFeatures().fit_transform(_checkerboard(10))[0]
    y_hist, i_hist = feats[: P + 2], feats[P + 2 :]
    # White centres see darker (interpolated) neighbours everywhere -> code 0; black centres
    # see brighter ones -> code P; the 8x8 interior holds 32 of each.
    np.testing.assert_array_equal(y_hist, [0.5, 0, 0, 0, 0, 0, 0, 0, 0.5, 0])
    # Black and white are both I = 0: a constant I channel.
    np.testing.assert_array_equal(i_hist, [0, 0, 0, 0, 0, 0, 0, 0, 1.0, 0])


def test_histograms_sum_to_one_per_channel_and_match_skimage_per_patch() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(5, 12, 9, 3), dtype=np.uint8)
    tf = LBPYIQFeatures(P=P, R=1, channels=("Y", "I", "Q")).fit(X)
    feats = tf.transform(X)
    assert feats.shape == (5, 3 * (P + 2))
    np.testing.assert_allclose(feats.reshape(5, 3, P + 2).sum(axis=2), 1.0)


def test_batched_lbp_equals_skimage_on_each_patch_interior() -> None:
    gray = np.random.default_rng(0).integers(0, 256, size=(5, 12, 9), dtype=np.uint8)
    X = np.repeat(gray[..., None], 3, axis=3)  # grey RGB: Y is the grey level itself
    feats = LBPYIQFeatures(P=P, R=1, channels=("Y",)).fit_transform(X)
    for k in range(5):
        codes = local_binary_pattern(gray[k], P, 1, method="uniform")[1:-1, 1:-1]
        ref = np.bincount(codes.astype(int).ravel(), minlength=P + 2) / codes.size
        np.testing.assert_allclose(feats[k], ref)


def test_yiq_matrix_equals_skimage() -> None:
    X = np.random.default_rng(2).integers(0, 256, size=(3, 5, 5, 3), dtype=np.uint8)
    np.testing.assert_allclose((X / 255.0) @ _RGB2YIQ, rgb2yiq(X), atol=1e-12)
    assert _YIQ_LOW[1] == pytest.approx(-_YIQ_HIGH[1]) == pytest.approx(-0.5959, abs=1e-4)


def test_batching_does_not_change_features(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(1).integers(0, 256, size=(7, 8, 8, 3), dtype=np.uint8)
    full = ColourLBPFeatures().fit_transform(X)
    monkeypatch.setattr("skintl.features.lbp._BATCH", 3)
    np.testing.assert_array_equal(ColourLBPFeatures().fit_transform(X), full)


def test_input_checks() -> None:
    with pytest.raises(TypeError, match="uint8"):
        LBPYIQFeatures().fit(np.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        LBPYIQFeatures().fit(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="Y, I, Q"):
        LBPYIQFeatures(channels=("Y", "H")).fit(_constant())
    with pytest.raises(ValueError, match="Y, I, Q"):
        LBPYIQFeatures(channels=("YI",)).fit(_constant())
    with pytest.raises(ValueError, match="interior"):
        LBPYIQFeatures(R=2).fit_transform(_constant(size=4))


def test_colour_features_of_a_constant_patch() -> None:
    X = _constant(rgb=(255, 255, 255))
    tf = ColourLBPFeatures(percentiles=(10, 90)).fit(X)
    feats = tf.transform(X)
    names = list(tf.get_feature_names_out())
    assert feats.shape == (2, tf.n_features_out_) == (2, 2 * 3 * 4 + 2 * (P + 2))
    assert len(names) == feats.shape[1]
    col = dict(zip(names, feats[0], strict=True))
    assert col["rgb_mean_G"] == pytest.approx(1.0)
    assert col["rgb_std_B"] == 0.0
    assert col["lab_p90_L"] == pytest.approx(100.0, abs=1e-3)  # white is L* = 100
    assert col["lab_mean_A"] == pytest.approx(0.0, abs=1e-2)
    assert col[f"lbp_Y_{P}"] == 1.0


def _textured_vs_smooth(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(n, 1, 1, 3))
    ramp = np.linspace(0, 20, 16)[None, :, None, None]  # gentle gradient across columns
    smooth = base[: n // 2] + ramp + rng.normal(0, 0.3, size=(n // 2, 16, 16, 3))
    textured = base[n // 2 :] + rng.normal(0, 40, size=(n - n // 2, 16, 16, 3))
    X = np.clip(np.concatenate([smooth, textured]), 0, 255).astype(np.uint8)
    y = np.array(["healthy"] * (n // 2) + ["AK"] * (n - n // 2))
    return X, y


@pytest.mark.parametrize("name", ["lbp_yiq_svm", "colour_lbp_svm"])
def test_baselines_separate_textured_from_smooth(name: str) -> None:
    X, y = _textured_vs_smooth(40, seed=0)
    X_test, y_test = _textured_vs_smooth(40, seed=1)
    model = BASELINES.get(name)().fit(X, y)
    assert isinstance(model, Pipeline)
    assert (model.predict(X_test) == y_test).mean() >= 0.9
    proba = model.predict_proba(X_test)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_registry_and_estimator_contract() -> None:
    assert {"lbp_yiq_svm", "colour_lbp_svm"} <= set(BASELINES.names())
    with pytest.raises(KeyError, match="lbp_yiq_svm"):
        BASELINES.get("lbp_svm")
    bad = LBPYIQFeatures(channels=("nope",))  # __init__ only stores, fit validates
    assert clone(bad).get_params()["channels"] == ("nope",)
    pipe = lbp_yiq_svm(C=3.0, P=16, R=2)
    assert pipe.get_params()["calibratedclassifiercv__estimator__C"] == 3.0
    assert pipe.get_params()["lbpyiqfeatures__P"] == 16
    assert clone(pipe).get_params()["lbpyiqfeatures__R"] == 2


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny full-batch steps: extra threads only add contention on shared CI cores.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * 6, [4.0] * 6, [-4.0, 4.0] * 3])
    y = np.repeat(["AK", "healthy", "SK"], 30)
    return centres[np.repeat(np.arange(3), 30)] + rng.normal(0, 0.5, (90, 6)), y


def test_thesis_mlp_fits_and_predicts_probabilities() -> None:
    X, y = _blobs()
    mlp = ThesisProtocolMLP(epochs=300, seed=0).fit(X, y)
    assert mlp.hidden_units_ == round(math.sqrt(3 * 6)) == 4
    assert list(mlp.classes_) == ["AK", "SK", "healthy"]
    proba = mlp.predict_proba(X)
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (mlp.predict(X) == y).mean() > 0.8
    assert 0 <= mlp.best_epoch_ < 300
    assert len(mlp.history_["val_loss"]) == 300
    again = ThesisProtocolMLP(epochs=300, seed=0).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(again, proba)  # fixed seed: reproducible


def test_thesis_mlp_applies_softmax_twice() -> None:
    # Cross-entropy of softmax(probabilities) cannot fall below log(1 + (K - 1) / e): the
    # double softmax caps the "logit" margin at 1. A single softmax would go well below it.
    X, y = _blobs()
    mlp = ThesisProtocolMLP(epochs=400, lr=1e-2, seed=0).fit(X, y)
    floor = math.log(1 + 2 / math.e)
    assert min(mlp.history_["train_loss"]) >= floor
    assert min(mlp.history_["train_loss"]) < floor + 0.05  # it did train towards the floor
