"""End-to-end fine-tuning: learns, sklearn contract, patient-grouped early stopping, seeding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

import skintl.evaluation.finetune as ft
from skintl.encoders.backbones import load_backbone
from skintl.evaluation.finetune import FineTuneClassifier, dihedral, finetune_factory, truncate
from skintl.evaluation.splits import validation_split
from skintl.features.extract import LayerTaps, preprocess

COLOURS = {"AK": (200, 40, 40), "SK": (110, 70, 40), "healthy": (230, 190, 160)}
TINY = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "accelerator": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _patches(per: int = 5, size: int = 32, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Noisy red / brown / skin-coloured patches: 4 patients x 3 classes x ``per``."""
    rng = np.random.default_rng(seed)
    X, y, groups = [], [], []
    for p in range(4):
        for name, rgb in COLOURS.items():
            noise = rng.normal(0, 20, (per, size, size, 3))
            X.append(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))
            y += [name] * per
            groups += [f"P{p}"] * per
    return np.concatenate(X), np.array(y), np.array(groups)


@pytest.fixture(scope="module")
def fitted() -> tuple[FineTuneClassifier, np.ndarray, np.ndarray]:
    X, y, groups = _patches()
    return FineTuneClassifier(**{**TINY, "epochs": 4}).fit(X, y, groups=groups), X, y


def test_learns_separable_colours(
    fitted: tuple[FineTuneClassifier, np.ndarray, np.ndarray],
) -> None:
    m, X, y = fitted
    assert (m.predict(X) == y).mean() > 0.6  # chance is 1/3
    assert 1 <= m.best_epoch_ <= len(m.validation_loss_curve_) <= 4


def test_proba_rows_sum_to_one_in_classes_order(
    fitted: tuple[FineTuneClassifier, np.ndarray, np.ndarray],
) -> None:
    m, X, y = fitted
    proba = m.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(m.classes_) == ["AK", "SK", "healthy"]
    # column j is the probability of classes_[j]: highest on average on that class's patches
    mean = np.stack([proba[y == c].mean(axis=0) for c in m.classes_])  # (K true, K column)
    assert (mean.argmax(axis=1) == np.arange(3)).all()
    np.testing.assert_array_equal(m.predict(X), m.classes_[proba.argmax(axis=1)])


def test_validation_split_is_by_patient(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def spy(groups: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        calls.append((groups.copy(), fraction, seed))
        return validation_split(groups, fraction, seed)

    monkeypatch.setattr(ft, "validation_split", spy)
    X, y, groups = _patches(per=2)
    m = FineTuneClassifier(**{**TINY, "epochs": 1}, validation_fraction=0.25, seed=3)
    m.fit(X, y, groups=groups)
    ((g, fraction, seed),) = calls
    np.testing.assert_array_equal(g, groups)
    assert (fraction, seed) == (0.25, 3)
    assert len(m.validation_patients_) == 1
    assert not set(m.validation_patients_) & set(m.train_patients_)
    assert set(m.validation_patients_) | set(m.train_patients_) == set(groups)


@pytest.mark.parametrize(("layer", "width"), [("stem", 64), ("layer1", 64), ("layer2", 128)])
def test_truncated_width_feeds_the_head(layer: str, width: int) -> None:
    net = FineTuneClassifier(layer=layer, head_hidden=7).build_network(3).eval()
    trunk, head = net[0], net[-1]
    assert trunk(torch.zeros(2, 3, 32, 32)).shape[1] == width
    assert head[0].in_features == width and head[-1].out_features == 3
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_truncation_matches_the_feature_taps() -> None:
    """Pooled truncated output == the cached features' LayerTaps output of the same block."""
    torch.manual_seed(0)
    net, _ = load_backbone("resnet18", "random")
    x = preprocess(_patches(per=1)[0][:4])
    with torch.no_grad():
        ours = truncate(net, "layer2")(x).mean(dim=(2, 3))
        taps = LayerTaps(net, ["layer2"])(x)["layer2"]
    torch.testing.assert_close(ours, taps)


def test_clone_and_factory() -> None:
    est = finetune_factory("resnet18", "random", "layer1", epochs=3, freeze_bn=True)
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert (c.layer, c.epochs, c.freeze_bn) == ("layer1", 3, True)
    assert not hasattr(c, "network_")


def test_missing_groups_and_bad_patches_are_clear_errors() -> None:
    X, y, groups = _patches(per=1)
    with pytest.raises(ValueError, match="groups"):
        FineTuneClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match=r"uint8 patches \(N, H, W, 3\)"):
        FineTuneClassifier(**TINY).fit(X.reshape(len(X), -1).astype(np.float32), y, groups)


def test_same_seed_same_predictions_and_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    X, y, groups = _patches(per=2)
    was = torch.are_deterministic_algorithms_enabled()
    a = FineTuneClassifier(**{**TINY, "epochs": 1}).fit(X, y, groups).predict_proba(X)
    b = FineTuneClassifier(**{**TINY, "epochs": 1}).fit(X, y, groups).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = FineTuneClassifier(**{**TINY, "epochs": 1}, seed=1).fit(X, y, groups).predict_proba(X)
    assert not np.array_equal(a, c)
    assert list(tmp_path.iterdir()) == []  # no logs, checkpoints or lightning_logs
    assert torch.are_deterministic_algorithms_enabled() == was


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_batchnorm_statistics_update_unless_frozen(freeze_bn: bool) -> None:
    X, y, groups = _patches(per=2)
    m = FineTuneClassifier(**{**TINY, "epochs": 1}, freeze_bn=freeze_bn, augment=False)
    m.fit(X, y, groups)
    bns = [b for b in m.network_.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    tracked = {int(b.num_batches_tracked) for b in bns}
    # load_backbone returns eval mode: training must switch BatchNorm to train mode itself
    n_batches = -(-int(np.isin(groups, m.train_patients_).sum()) // TINY["batch_size"])
    assert tracked == ({0} if freeze_bn else {n_batches})


def test_dihedral_moves_pixels_but_keeps_colours() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 8, 8, 3), dtype=torch.uint8)
    out = dihedral(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    for a, b in zip(x, out, strict=True):  # each patch: same pixels, rearranged
        torch.testing.assert_close(a.reshape(-1, 3).sort(0).values, b.reshape(-1, 3).sort(0).values)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fits_on_gpu_in_mixed_precision() -> None:
    X, y, groups = _patches(per=2)
    was = torch.are_deterministic_algorithms_enabled()
    m = FineTuneClassifier(**{**TINY, "epochs": 1, "accelerator": "gpu"}).fit(X, y, groups)
    np.testing.assert_allclose(m.predict_proba(X).sum(axis=1), 1.0, rtol=1e-5)
    assert next(m.network_.parameters()).device.type == "cpu"  # stored on the CPU
    assert torch.are_deterministic_algorithms_enabled() == was


def test_finetune_cell_in_a_study(synthetic_root: Path, tmp_path: Path) -> None:
    """Fine-tuning runs as a cell of the study, on the same folds as feature cells."""
    import pandas as pd

    from skintl.cli import main
    from studyhelpers import tiny_config, write_config

    cfg = tiny_config(
        synthetic_root,
        features={"layers": ["layer1"]},
        evaluation={
            "classifiers": ["logreg"],
            "finetune": [
                {
                    "encoder": "r18",
                    "layer": "layer1",
                    "epochs": 1,
                    "batch_size": 16,
                    "accelerator": "cpu",
                }
            ],
        },
    )
    cfg["features"] = {**tiny_config(synthetic_root)["features"], "layers": ["layer1"]}
    config = write_config(tmp_path / "c.yaml", cfg)
    assert main(["study", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    table = pd.read_csv(tmp_path / "run" / "evaluation" / "metrics.csv")
    assert list(table["classifier"]) == ["logreg", "finetune"]
    ev = tmp_path / "run" / "evaluation" / "r18" / "layer1"
    a = pd.read_parquet(ev / "finetune" / "predictions.parquet")
    b = pd.read_parquet(ev / "logreg" / "predictions.parquet")
    assert a[["patch", "fold"]].equals(b[["patch", "fold"]])
