"""Feature shapes and channels per layer, and one pass equal to separate passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skintl.encoders.backbones import build_backbone, layer_info
from skintl.features.extract import LayerTaps, extract_features, preprocess


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {arch: build_backbone(arch).eval() for arch in ("resnet18", "resnet50")}


LAYERS = list(layer_info("resnet18"))  # stem, layer1..layer4: the same taps for ResNet-50

EXPECTED = {
    "resnet18": {"stem": 64, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512},
    "resnet50": {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("size", [32, 50])
def test_shapes_and_channels_per_layer(nets: dict, arch: str, size: int) -> None:
    patches = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    feats = extract_features(nets[arch], patches, LAYERS, batch_size=2, progress=False)
    assert list(feats) == list(LAYERS)
    for layer, f in feats.items():
        assert f.shape == (3, EXPECTED[arch][layer]) == (3, layer_info(arch)[layer].channels)
        assert f.dtype == np.float32 and np.isfinite(f).all()


def test_one_pass_equals_separate_passes(nets: dict) -> None:
    net = nets["resnet18"]
    x = preprocess(np.random.default_rng(1).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8))
    with torch.inference_mode():
        together = LayerTaps(net, ["layer1", "layer3"])(x)
        for layer in ("layer1", "layer3"):
            alone = LayerTaps(net, [layer])(x)[layer]
            torch.testing.assert_close(together[layer], alone, rtol=1e-5, atol=1e-6)
            # and equal to torchvision's own blocks run by hand
        z = LayerTaps(net, ["layer1"]).normalize(x)
        ref = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(z))))).mean((2, 3))
        torch.testing.assert_close(together["layer1"], ref, rtol=1e-5, atol=1e-6)


def test_input_resize_and_normalisation(nets: dict) -> None:
    white = np.full((2, 20, 20, 3), 255, dtype=np.uint8)
    x = preprocess(white, input_size=64)
    assert x.shape == (2, 3, 64, 64)
    torch.testing.assert_close(x[0, :, 10, 10], torch.ones(3))  # [0, 1]: the taps normalise
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(LayerTaps(nets["resnet18"], ["stem"]).normalize(x)[0, :, 10, 10],
                               expected)  # fmt: skip


def test_unknown_layer_lists_valid_ones(nets: dict) -> None:
    with pytest.raises(KeyError, match=r"layer5.*valid: stem, layer1"):
        LayerTaps(nets["resnet18"], ["layer5"])


def test_cuda_without_a_gpu_is_a_clear_error(nets: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from skintl.config import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    patches = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"features.device is 'cuda'.*set features.device"):
        extract_features(nets["resnet18"], patches, ["layer1"], progress=False, device="cuda")
    # "auto" falls back to the CPU
    feats = extract_features(nets["resnet18"], patches, ["layer1"], progress=False, device="auto")
    assert feats["layer1"].shape == (2, 64)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_config_rejects_unknown_devices(device: str) -> None:
    from skintl.config import ConfigError, parse_config

    cfg = {"data": {"source": "synthetic"}, "features": {"encoders": [{"name": "r", "arch":
           "resnet18"}], "device": device}}  # fmt: skip
    with pytest.raises(ConfigError, match="device"):
        parse_config(cfg)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_gpu_features_equal_cpu_fp32(nets: dict, arch: str) -> None:
    """On CUDA the pass is full fp32 (TF32 off): every layer within 1e-4 of the CPU's."""
    patches = np.random.default_rng(2).integers(0, 256, (300, 50, 50, 3), dtype=np.uint8)
    cpu = extract_features(nets[arch], patches, LAYERS, batch_size=128, progress=False)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    gpu = extract_features(
        nets[arch], patches, LAYERS, batch_size=128, progress=False, device="cuda"
    )
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == tf32
    assert next(nets[arch].parameters()).device.type == "cpu"  # handed back on the CPU
    for layer in LAYERS:
        err = np.linalg.norm(gpu[layer] - cpu[layer]) / np.linalg.norm(cpu[layer])
        assert err < 1e-4, (layer, err)


def test_read_only_memory_mapped_patches_give_no_warning(nets: dict, tmp_path) -> None:
    import warnings

    np.save(tmp_path / "p.npy", np.zeros((3, 32, 32, 3), np.uint8))
    patches = np.load(tmp_path / "p.npy", mmap_mode="r")  # as the features stage reads them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feats = extract_features(nets["resnet18"], patches, ["layer1"], progress=False)
    assert feats["layer1"].shape == (3, 64)
