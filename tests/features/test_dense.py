"""Dense features: tiles equal one pass, receptive fields, window pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skintl.encoders.backbones import build_backbone, layer_info
from skintl.features.dense import (
    feature_map,
    geometry,
    receptive_field,
    truncated_backbone,
    window_features,
)


@pytest.fixture(scope="module")
def r18() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("resnet18").eval()


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _empirical_rf(trunk: torch.nn.Module, size: int = 257) -> int:
    """Width of the input region that moves the centre output cell (by gradients)."""
    x = torch.randn(1, 3, size, size, requires_grad=True)
    y = trunk(x)
    c = y.shape[-1] // 2
    y[0, :, c, c].sum().backward()
    assert x.grad is not None
    cols = np.flatnonzero(x.grad.abs().sum(dim=(0, 1, 2)).numpy() > 0)
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("layer", ["layer1", "layer2"])
def test_receptive_field_matches_gradients(r18: torch.nn.Module, layer: str) -> None:
    trunk = truncated_backbone(r18, layer)
    # the walk gives the field of the longest path; gradients can only be narrower at the
    # stride grid's edge, never wider
    rf = receptive_field(trunk)
    emp = _empirical_rf(trunk)
    assert emp <= rf <= emp + layer_info("resnet18")[layer].stride


@pytest.mark.parametrize(("layer", "shape", "tile"), [
    ("layer2", (150, 131), 32), ("layer2", (96, 200), 48), ("layer3", (120, 170), 64),
])  # fmt: skip
def test_tiled_map_equals_one_pass(
    r18: torch.nn.Module, layer: str, shape: tuple[int, int], tile: int
) -> None:
    trunk = truncated_backbone(r18, layer)
    geo = geometry(trunk, layer_info("resnet18")[layer].stride, 32)
    photo = _photo(*shape)
    one = feature_map(trunk, photo, geo, tile=None)
    tiled = feature_map(trunk, photo, geo, tile=tile)
    assert tiled.shape == one.shape
    torch.testing.assert_close(tiled, one, rtol=1e-4, atol=1e-4)


def test_too_small_halo_breaks_equality(r18: torch.nn.Module) -> None:
    """The equality above is not trivial: without the halo the tiles differ."""
    from dataclasses import replace

    trunk = truncated_backbone(r18, "layer2")
    geo = replace(geometry(trunk, 8, 32), halo=0)
    photo = _photo(150, 131)
    diff = (feature_map(trunk, photo, geo, tile=32) - feature_map(trunk, photo, geo)).abs()
    assert float(diff.max()) > 1e-2


def test_tiled_window_features_equal_one_pass(r18: torch.nn.Module) -> None:
    trunk = truncated_backbone(r18, "layer2")
    geo = geometry(trunk, 8, 32)
    photo = _photo(140, 170, seed=3)
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 140 - 32, 40), rng.integers(0, 170 - 32, 40)
    one = window_features(trunk, photo, geo, ys, xs, tile=None)
    tiled = window_features(trunk, photo, geo, ys, xs, tile=40)
    assert one.shape == (40, 128)
    np.testing.assert_allclose(tiled, one, rtol=1e-4, atol=1e-4)


def test_window_feature_is_mean_of_its_cells(r18: torch.nn.Module) -> None:
    trunk = truncated_backbone(r18, "layer2")
    geo = geometry(trunk, 8, 32)  # k = 4 cells
    photo = _photo(96, 96, seed=5)
    fmap = feature_map(trunk, photo, geo)
    f = window_features(trunk, photo, geo, np.array([21]), np.array([3]), tile=None)
    # round(21 / 8) = 3, round(3 / 8) = 0
    expected = fmap[:, 3:7, 0:4].mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(f[0], expected, rtol=1e-5, atol=1e-6)


def test_truncated_backbone_keeps_backbone_keys(r18: torch.nn.Module) -> None:
    keys = set(truncated_backbone(r18, "layer1").state_dict())
    assert "conv1.weight" in keys and "layer1.0.conv1.weight" in keys
    assert not any(k.startswith("layer2") for k in keys)
    assert keys <= set(r18.state_dict())


def test_every_tap_from_one_pass_equals_each_tap_alone(r18: torch.nn.Module) -> None:
    """Training computes every tap of a photo in one pass (tiled); each equals the one-tap path
    scanning uses, windows at every border included."""
    from skintl.features.dense import dense_patch_features

    layers = ["stem", "layer2", "layer3"]
    photo = _photo(131, 150, seed=7)
    ys, xs = (a.ravel() for a in np.meshgrid([0, 13, 60, 99], [0, 41, 118], indexing="ij"))
    strides = {k: v.stride for k, v in layer_info("resnet18").items()}
    image_idx = np.zeros(len(ys), np.int64)
    together = dense_patch_features(
        r18, strides, ["p"], image_idx, ys, xs, 32, layers, lambda _: photo, tile=64, progress=False
    )
    for layer in layers:
        trunk = truncated_backbone(r18, layer)
        alone = window_features(trunk, photo, geometry(trunk, strides[layer], 32), ys, xs, None)
        np.testing.assert_allclose(together[layer], alone, rtol=1e-4, atol=1e-4, err_msg=layer)


def test_cell_grid_maps_repeat_coarse_cells_on_the_finest_grid() -> None:
    """A stride-8 map on the stride-4 grid of a 10 x 13 photo (3 x 4 fine cells): each fine
    cell takes the coarse cell that contains it."""
    from skintl.features.dense import cell_grid_maps

    fine = torch.arange(12.0).view(1, 3, 4)
    coarse = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]])  # ceil(10 / 8) x ceil(13 / 8)
    out = cell_grid_maps({"a": fine, "b": coarse}, {"a": 4, "b": 8}, (10, 13))
    assert out.shape == (2, 3, 4)
    assert torch.equal(out[0], fine[0])
    assert out[1].tolist() == [[10, 10, 20, 20], [10, 10, 20, 20], [30, 30, 40, 40]]
    with pytest.raises(ValueError, match="not a multiple"):
        cell_grid_maps({"a": fine, "b": coarse}, {"a": 4, "b": 6}, (10, 13))


@pytest.mark.parametrize("tile", [None, 48])
def test_cell_features_of_two_taps_equal_each_tap_alone(
    r18: torch.nn.Module, tile: int | None
) -> None:
    """Every tap from one pass, stacked on the finest grid, equals each tap's own map (its
    truncated trunk alone), repeated onto that grid: at the borders and across tiles too."""
    from skintl.encoders.taps import TapMaps
    from skintl.features.dense import cell_features, tap_geometries

    info, photo = layer_info("resnet18"), _photo(101, 75, seed=3)
    taps = TapMaps(r18, ["layer2", "layer1"]).eval()
    geos = tap_geometries(taps, {t: info[t].stride for t in ("layer1", "layer2")}, 32)
    got = cell_features(taps, photo, geos, tile)
    h, w = (int(np.ceil(n / 4)) for n in photo.shape[:2])
    assert got.shape == (64 + 128, h, w)
    for tap, channels in (("layer1", slice(0, 64)), ("layer2", slice(64, None))):
        alone = truncated_backbone(r18, tap)
        fmap = feature_map(alone, photo, geometry(alone, info[tap].stride, 32))
        r = info[tap].stride // 4
        expect = fmap[:, torch.arange(h) // r][:, :, torch.arange(w) // r]
        torch.testing.assert_close(got[channels], expect, atol=1e-4, rtol=1e-4)
