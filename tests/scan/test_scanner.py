"""Dense scanning classifies windows by pooling the head's first layer, not the features."""

from __future__ import annotations

import numpy as np
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
