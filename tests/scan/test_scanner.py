"""Dense scanning classifies windows by pooling the head's first layer, not the features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skintl.encoders.backbones import build_backbone
from skintl.features.dense import geometry, truncated_backbone, window_features
from skintl.scan.bundle import Bundle
from skintl.scan.head import Head
from skintl.scan.scanner import window_probabilities
from skintl.scan.windows import Windows


def test_dense_probabilities_equal_the_head_on_pooled_features() -> None:
    torch.manual_seed(0)
    trunk = truncated_backbone(build_backbone("resnet18"), "layer2")
    rng = np.random.default_rng(0)
    d, h = 128, 19
    weights = [rng.normal(0, 0.3, (h, d)), rng.normal(0, 0.3, (3, h))]
    biases = [rng.normal(0, 0.3, h), rng.normal(0, 0.3, 3)]
    head = Head(
        rng.normal(0, 1, d), rng.uniform(0.5, 2, d), weights, biases, ["AK", "healthy", "SK"]
    )
    meta = {"layer": "layer2", "patch_size": 32, "layer_stride": 8, "feature_mode": "dense",
            "input_size": None, "photo_short_side": None}  # fmt: skip
    bundle = Bundle(meta, trunk, head)
    photo = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
    # windows everywhere, the bottom and right edges included (fewer cells to average there)
    ys, xs = (a.ravel() for a in np.meshgrid(np.arange(0, 150, 7), np.arange(0, 170, 9)))
    win = Windows(ys, xs, 0, np.full((150, 170), -1))
    got = window_probabilities(bundle, photo, win, "dense", "cpu", tile=48)
    feats = window_features(trunk, photo, geometry(trunk, 8, 32), ys, xs, tile=None)
    np.testing.assert_allclose(got, head.predict_proba(feats), atol=2e-5)
    assert got.argmax(1).tolist() == head.predict_proba(feats).argmax(1).tolist()


def _random_head(d: int, seed: int = 0) -> Head:
    rng = np.random.default_rng(seed)
    return Head(rng.normal(0, 1, d), rng.uniform(0.5, 2, d), [rng.normal(0, 0.3, (3, d))],
                [rng.normal(0, 0.3, 3)], ["AK", "healthy", "SK"])  # fmt: skip


def _photos() -> list[tuple[str, np.ndarray]]:
    """An odd-sized synthetic photo, and two real PAD-UFES photos where the data are here."""
    from conftest import SHARED_PAD

    from skintl.data.sources import read_rgb

    out = [("synthetic", np.random.default_rng(4).integers(0, 256, (97, 133, 3), np.uint8))]
    real = sorted((SHARED_PAD / "images").glob("PAT_*.jpg"))[:2]
    return out + [(p.name, read_rgb(p)) for p in real]


@pytest.mark.parametrize("arch", ["resnet18", "tf_efficientnet_lite0"])
def test_training_feature_equals_scan_feature_at_the_borders(arch: str) -> None:
    """One feature path: every patch of a grid reaching each border, as the features stage
    computes it for training, equals the feature the dense scan pools for the same window
    (the scan's photo reflect-padded by its own margin)."""
    from skintl.encoders.backbones import layer_info
    from skintl.features.dense import dense_patch_features

    torch.manual_seed(0)
    net = build_backbone(arch).eval()
    layer = "layer2" if arch == "resnet18" else "blocks.2"
    info = layer_info(arch)
    trunk = truncated_backbone(net, layer)
    head = _random_head(info[layer].channels)
    bundle = Bundle({"layer": layer, "patch_size": 32, "layer_stride": info[layer].stride,
                     "feature_mode": "dense", "input_size": None, "photo_short_side": None},
                    trunk, head)  # fmt: skip
    for name, photo in _photos():
        h, w = photo.shape[:2]
        grid = np.meshgrid(np.r_[0:h - 32:9, h - 32], np.r_[0:w - 32:11, w - 32], indexing="ij")
        ys, xs = (a.ravel() for a in grid)
        train = dense_patch_features(
            net, {layer: info[layer].stride}, [name], np.zeros(len(ys), np.int64), ys, xs, 32,
            [layer], lambda _: photo, tile=512, progress=False,
        )[layer]  # fmt: skip
        pad = 24  # the scan pads by its own margin; the features must not depend on it
        padded = np.pad(photo, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        win = Windows(ys + pad, xs + pad, pad, np.full((h, w), -1))
        got = window_probabilities(bundle, padded, win, "dense", "cpu", tile=64)
        np.testing.assert_allclose(got, head.predict_proba(train), atol=2e-5, err_msg=name)
