"""Importers: published checkpoint layouts, built from random weights, round-trip exactly."""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models

from skintl.encoders.backbones import (
    WeightsError,
    load_backbone,
    read_encoder_file,
)
from skintl.encoders.importers import (
    IMPORTERS,
    check_shapes,
    detect_format,
    import_checkpoint,
    infer_arch,
)
from skintl.rundir import sha256_file

BATCH = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (B, C, H, W)


def _randomise(net: nn.Module, seed: int) -> None:
    """Random affine and running statistics in every BatchNorm, so unloaded BN stats show."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5


def _resnet(arch: str, seed: int, num_classes: int = 1000) -> models.ResNet:
    torch.manual_seed(seed)
    net: models.ResNet = getattr(models, arch)(weights=None, num_classes=num_classes)
    _randomise(net, seed)
    return net


def _features(resnet: models.ResNet) -> torch.Tensor:
    """Pooled features (B, C) of ``resnet`` with its head removed, in eval mode."""
    net = copy.deepcopy(resnet)
    net.fc = nn.Identity()
    with torch.no_grad():
        return net.eval()(BATCH)


def _assert_same_features(reference: torch.Tensor, dst: Path, arch: str) -> None:
    net, _ = load_backbone(arch, str(dst))
    with torch.no_grad():
        assert torch.equal(net(BATCH), reference)


def _mlp_head(net: models.ResNet) -> None:
    """The MLP projection head of MoCo v2 and SimCLR: ``fc.0`` and ``fc.2`` around a ReLU."""
    dim_mlp = net.fc.weight.shape[1]
    net.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), net.fc)


def _sgd_state(model: nn.Module) -> dict[str, Any]:
    """The optimizer entry; left without momentum buffers to keep test files small."""
    return torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9).state_dict()


class _MoCo(nn.Module):
    """The parameters and buffers of facebookresearch/moco's ``moco.builder.MoCo``."""

    def __init__(self, arch: str, mlp: bool, dim: int = 128, K: int = 256) -> None:
        super().__init__()
        self.encoder_q = _resnet(arch, seed=1, num_classes=dim)
        self.encoder_k = _resnet(arch, seed=2, num_classes=dim)  # differs from q on purpose
        if mlp:
            _mlp_head(self.encoder_q)
            _mlp_head(self.encoder_k)
        self.register_buffer("queue", nn.functional.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


class _DistributedDataParallel(nn.Module):
    """Adds the ``module.`` prefix that main_moco.py's DDP-wrapped state dict carries."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _write_moco(path: Path, mlp: bool) -> torch.Tensor:
    """main_moco.py's checkpoint; returns the reference features of encoder_q."""
    model = _DistributedDataParallel(_MoCo("resnet18", mlp=mlp))
    ckpt = {
        "epoch": 200,
        "arch": "resnet18",
        "state_dict": model.state_dict(),
        "optimizer": _sgd_state(model),
    }
    torch.save(ckpt, path)
    return _features(model.module.encoder_q)


def _write_sthalles_simclr(path: Path) -> torch.Tensor:
    """sthalles/SimCLR's ``ResNetSimCLR`` checkpoint; returns the backbone's features."""
    model = nn.Module()
    model.backbone = _resnet("resnet18", seed=3, num_classes=128)
    _mlp_head(model.backbone)
    ckpt = {
        "epoch": 100,
        "arch": "resnet18",
        "state_dict": model.state_dict(),
        "optimizer": _sgd_state(model),
    }
    torch.save(ckpt, path)
    return _features(model.backbone)


def _write_torchvision(path: Path, seed: int = 4) -> torch.Tensor:
    net = _resnet("resnet18", seed=seed)
    torch.save(net.state_dict(), path)
    return _features(net)


# Source checkpoints shared by the tests of one module; tests only read them.
Source = tuple[Path, torch.Tensor]  # (checkpoint file, reference features (B, C))


@pytest.fixture(scope="module")
def moco_v2(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("moco") / "moco_v2_200ep_pretrain.pth.tar"
    return path, _write_moco(path, mlp=True)


@pytest.fixture(scope="module")
def sthalles(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("simclr") / "checkpoint_0100.pth.tar"
    return path, _write_sthalles_simclr(path)


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("torchvision") / "resnet18.pth"
    return path, _write_torchvision(path)


@pytest.mark.parametrize("mlp", [True, False], ids=["v2-mlp-head", "v1-linear-head"])
def test_moco_round_trip(tmp_path: Path, moco_v2: Source, mlp: bool) -> None:
    dst = tmp_path / "enc.pt"
    if mlp:
        src, reference = moco_v2
    else:
        src = tmp_path / "moco_v1_200ep_pretrain.pth.tar"
        reference = _write_moco(src, mlp=False)
    prov = import_checkpoint("moco", src, dst)
    _assert_same_features(reference, dst, "resnet18")
    assert prov["method"] == "moco" and prov["arch"] == "resnet18" and prov["epoch"] == 200
    assert prov["moco_version"] == ("v2" if mlp else "v1")
    assert prov["sha256"] == sha256_file(src) and prov["source_file"] == src.name
    assert read_encoder_file(dst)[2] == prov


def test_sthalles_simclr_round_trip(tmp_path: Path, sthalles: Source) -> None:
    (src, reference), dst = sthalles, tmp_path / "enc.pt"
    prov = import_checkpoint("simclr", src, dst)
    _assert_same_features(reference, dst, "resnet18")
    assert prov["method"] == "simclr" and prov["simclr_layout"] == "sthalles"
    assert prov["sha256"] == sha256_file(src) and prov["epoch"] == 100


def test_simclr_converter_resnet50_round_trip_infers_arch(tmp_path: Path) -> None:
    """tonylins/simclr-converter output of the official SimCLR v1 ResNet-50 (1x)."""
    src, dst = tmp_path / "resnet50-1x.pth", tmp_path / "enc.pt"
    net = _resnet("resnet50", seed=5)
    torch.save({"state_dict": net.state_dict()}, src)
    prov = import_checkpoint("simclr", src, dst)
    assert prov["arch"] == "resnet50" and prov["simclr_layout"] == "simclr-converter"
    assert prov["sha256"] == sha256_file(src)
    _assert_same_features(_features(net), dst, "resnet50")


@pytest.mark.parametrize("arch", [None, "resnet18"], ids=["inferred", "given"])
def test_torchvision_round_trip(
    tmp_path: Path, torchvision_resnet18: Source, arch: str | None
) -> None:
    (src, reference), dst = torchvision_resnet18, tmp_path / "enc.pt"
    prov = import_checkpoint("torchvision", src, dst, arch=arch)
    _assert_same_features(reference, dst, "resnet18")
    assert prov == {
        "method": "supervised",
        "format": "torchvision",
        "source_file": src.name,
        "sha256": sha256_file(src),
        "arch": "resnet18",
    }


def test_skintl_reimport_keeps_provenance(tmp_path: Path, moco_v2: Source) -> None:
    (src, reference), first, second = moco_v2, tmp_path / "a.pt", tmp_path / "b.pt"
    original = import_checkpoint("moco", src, first)
    prov = import_checkpoint("skintl", first, second)
    _assert_same_features(reference, second, "resnet18")
    assert prov["method"] == "moco" and prov["epoch"] == 200 and prov["moco_version"] == "v2"
    assert prov["format"] == "skintl" and prov["sha256"] == sha256_file(first)
    assert prov["origin"] == {
        "format": "moco",
        "source_file": src.name,
        "sha256": original["sha256"],
    }


def test_detect_format(
    tmp_path: Path, moco_v2: Source, sthalles: Source, torchvision_resnet18: Source
) -> None:
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pt")
    import_checkpoint("torchvision", torchvision_resnet18[0], tmp_path / "enc.pt")
    files = {"moco": moco_v2[0], "simclr": sthalles[0], "torchvision": torchvision_resnet18[0]}
    assert {fmt: detect_format(path) for fmt, path in files.items()} == {
        "moco": "moco",
        "simclr": "simclr",
        "torchvision": "torchvision",
    }
    assert detect_format(tmp_path / "enc.pt") == "skintl"
    assert detect_format(tmp_path / "other.pt") is None


def test_moco_given_as_simclr_names_the_format(tmp_path: Path, moco_v2: Source) -> None:
    src = moco_v2[0]
    with pytest.raises(WeightsError) as err:
        import_checkpoint("simclr", src, tmp_path / "enc.pt")
    msg = str(err.value)
    assert "not a simclr checkpoint" in msg and "--format moco" in msg
    assert "'epoch', 'arch', 'state_dict', 'optimizer'" in msg  # top-level keys
    assert "module.encoder_q" in msg and "module.queue_ptr" in msg  # key prefixes
    assert not (tmp_path / "enc.pt").exists()


def test_torchvision_given_as_moco(tmp_path: Path, torchvision_resnet18: Source) -> None:
    with pytest.raises(WeightsError, match=r"'state_dict' entry.*--format torchvision"):
        import_checkpoint("moco", torchvision_resnet18[0], tmp_path / "enc.pt")


def test_random_dict_matches_no_format(tmp_path: Path) -> None:
    src = tmp_path / "random.pt"
    torch.save({"foo": torch.zeros(3), "bar": 1}, src)
    with pytest.raises(WeightsError) as err:
        import_checkpoint("torchvision", src, tmp_path / "enc.pt")
    msg = str(err.value)
    assert "matches none of the known formats" in msg and "['foo', 'bar']" in msg
    assert "moco, simclr, skintl, torchvision" in msg


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file(tmp_path: Path, torchvision_resnet18: Source, damage: str) -> None:
    src, data = tmp_path / "resnet18.pth", torchvision_resnet18[0].read_bytes()
    src.write_bytes(data[: len(data) // 2] if damage == "truncated" else bytes(range(256)) * 8)
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        import_checkpoint("torchvision", src, tmp_path / "enc.pt", trust=True)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        import_checkpoint("moco", tmp_path / "nope.pth", tmp_path / "enc.pt")


def test_unknown_format_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="moco, simclr, skintl, torchvision"):
        import_checkpoint("byol", tmp_path / "x.pth", tmp_path / "enc.pt")


@pytest.mark.parametrize(
    ("obj", "name"),
    [(argparse.Namespace(arch="resnet18", lr=0.03), "argparse.Namespace"), (np.ones(3), "numpy")],
    ids=["namespace", "numpy"],
)
def test_pickled_objects_need_trust(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sthalles: Source, obj: Any, name: str
) -> None:
    src, dst = tmp_path / "checkpoint.pth.tar", tmp_path / "enc.pt"
    torch.save(
        {**_load(sthalles[0]), "args": obj}, src
    )  # as checkpoints that store their argparse options
    reference = sthalles[1]
    with pytest.raises(WeightsError) as err:
        import_checkpoint("simclr", src, dst)
    assert "refusing" in str(err.value) and name in str(err.value)
    assert "trust=True" in str(err.value) and not dst.exists()
    with caplog.at_level(logging.WARNING, logger="skintl.encoders.importers"):
        prov = import_checkpoint("simclr", src, dst, trust=True)
    assert "weights_only=False" in caplog.text
    assert prov["method"] == "simclr"
    _assert_same_features(reference, dst, "resnet18")


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_missing_backbone_key_is_named(tmp_path: Path, torchvision_resnet18: Source) -> None:
    src, sd = tmp_path / "resnet18.pth", _load(torchvision_resnet18[0])
    del sd["layer4.1.bn2.running_var"]
    torch.save(sd, src)
    with pytest.raises(WeightsError, match=r"1 missing keys.*layer4\.1\.bn2\.running_var"):
        import_checkpoint("torchvision", src, tmp_path / "enc.pt")


def test_moco_stray_key_is_rejected(tmp_path: Path, moco_v2: Source) -> None:
    src, ckpt = tmp_path / "moco.pth.tar", _load(moco_v2[0])
    ckpt["state_dict"]["module.predictor.weight"] = torch.zeros(2)
    torch.save(ckpt, src)
    with pytest.raises(WeightsError, match=r"unexpected keys \['module\.predictor\.weight'\]"):
        import_checkpoint("moco", src, tmp_path / "enc.pt")


def test_wrong_shape_is_named(tmp_path: Path, torchvision_resnet18: Source) -> None:
    src, sd = tmp_path / "resnet18.pth", _load(torchvision_resnet18[0])
    sd["layer1.0.conv1.weight"] = torch.zeros(128, 64, 3, 3)  # e.g. a widened network
    torch.save(sd, src)
    with pytest.raises(WeightsError, match=r"1 tensors do not have resnet18's shapes"):
        import_checkpoint("torchvision", src, tmp_path / "enc.pt")


def test_given_arch_that_does_not_fit(tmp_path: Path, torchvision_resnet18: Source) -> None:
    with pytest.raises(WeightsError, match=r"missing keys.*architecture resnet50 given"):
        import_checkpoint(
            "torchvision", torchvision_resnet18[0], tmp_path / "enc.pt", arch="resnet50"
        )


def test_declared_arch_must_match_tensors(tmp_path: Path, moco_v2: Source) -> None:
    src, ckpt = tmp_path / "moco.pth.tar", _load(moco_v2[0])
    torch.save({**ckpt, "arch": "resnet50"}, src)
    with pytest.raises(WeightsError, match=r"says arch 'resnet50', but its tensors are resnet18"):
        import_checkpoint("moco", src, tmp_path / "enc.pt")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_infer_arch_from_tensor_names(arch: str) -> None:
    with torch.device("meta"):  # names and shapes only
        sd = getattr(models, arch)(weights=None).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    assert infer_arch(sd) == arch
    check_shapes(arch, sd, source="test")


def test_registry_holds_every_format() -> None:
    assert IMPORTERS.names() == ["efficientnet-lite", "moco", "simclr", "skintl", "torchvision"]
