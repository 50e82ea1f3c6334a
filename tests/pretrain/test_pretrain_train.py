"""pretrain(): Lightning runs end to end on CPU, resume, the CLI helpers and 2-process DDP."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from skintl.encoders.backbones import load_backbone, read_encoder_file
from skintl.pretrain import pretrain
from skintl.pretrain.augment import AugmentConfig
from skintl.pretrain.cli import add_arguments, method_kwargs, run_from_args

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"
)
TINY: dict[str, Any] = dict(
    arch="resnet18", max_epochs=1, batch_size=8, accelerator="cpu", devices=1,
    num_workers=0, progress_bar=False, augment=AugmentConfig(size=32),
)  # fmt: skip
MOCO = {"queue_size": 16}


class CountBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args: Any) -> None:
        self.batches += 1


def _metrics(out_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for f in sorted((out_dir / "logs" / "csv").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(f.open()))
    return rows


@pytest.mark.parametrize("method", ["supervised", "simclr", "moco"])
def test_pretrain_writes_a_loadable_encoder(method, images, labels, groups, tmp_path) -> None:
    kwargs = MOCO if method == "moco" else {}
    path = pretrain(images, labels, groups, method=method, out_dir=tmp_path, **TINY, **kwargs)
    assert path == tmp_path / "encoder.pt"
    arch, sd, prov = read_encoder_file(path)
    assert arch == "resnet18" and prov["method"] == method and prov["images"] == len(images)
    assert prov["same_group_positives"] is (method != "supervised")
    assert prov["lr"] == pytest.approx(
        {"supervised": 0.1, "simclr": 0.3, "moco": 0.03}[method] * 8 / 256
    )
    load_backbone("resnet18", str(path))  # strict load: exactly the backbone keys
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "logs" / "tensorboard").glob("version_0/events.out.tfevents.*"))
    losses = [float(r["train/loss_epoch"]) for r in _metrics(tmp_path) if r.get("train/loss_epoch")]
    assert len(losses) == 1 and np.isfinite(losses[0])
    # the backbone was trained: it differs from the same seed's initial weights
    torch.manual_seed(0)
    L.seed_everything(0)
    from skintl.pretrain import METHODS

    init = METHODS.get(method)("resnet18", num_classes=3, **kwargs).backbone.state_dict()
    assert not torch.equal(init["conv1.weight"], sd["conv1.weight"])


def test_resume_continues_from_last_checkpoint(images, tmp_path) -> None:
    first = CountBatches()
    pretrain(images, method="simclr", out_dir=tmp_path, callbacks=[first], **TINY)
    assert first.batches == 4  # 32 images / batch 8
    second = CountBatches()
    path = pretrain(images, method="simclr", out_dir=tmp_path, callbacks=[second],
                    **{**TINY, "max_epochs": 2})  # fmt: skip
    assert second.batches == 4  # only the second epoch ran
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)  # fmt: skip
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 8  # epochs done, steps done
    _, _, prov = read_encoder_file(path)
    assert prov["epochs"] == 2 and prov["resumed_from"].endswith("last.ckpt")
    assert [r["epoch"] for r in _metrics(tmp_path) if r.get("train/loss_epoch")] == ["0", "1"]
    with pytest.raises(FileExistsError, match="resume=True"):
        pretrain(images, method="simclr", out_dir=tmp_path, resume=False, **TINY)


def test_cli_helpers_run_pretraining(images, groups, tmp_path) -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    argv = ["--method", "moco", "--out-dir", str(tmp_path), "--epochs", "1", "--batch-size", "8",
            "--accelerator", "cpu", "--devices", "1", "--num-workers", "0", "--crop-size", "32",
            "--queue-size", "16", "--temperature", "0.3", "--no-progress-bar"]  # fmt: skip
    args = p.parse_args(argv)
    assert method_kwargs(args) == {"queue_size": 16, "temperature": 0.3}
    _, _, prov = read_encoder_file(run_from_args(args, images, None, groups))
    assert prov["queue_size"] == 16 and prov["temperature"] == 0.3
    bad = p.parse_args([*argv[:4], "--method", "simclr", "--queue-size", "8"])
    with pytest.raises(ValueError, match="does not take --queue-size"):
        method_kwargs(bad)
    with pytest.raises(SystemExit):
        p.parse_args(["--method", "byol", "--out-dir", "x"])


DDP_RUNS = [
    pytest.param("simclr", "ddp_fork", id="simclr-ddp_fork"),
    pytest.param("moco", "ddp_fork", id="moco-ddp_fork"),
    # the same DDP strategy and launcher with fresh interpreters: ~25 s here, so opt-in
    pytest.param("simclr", "ddp_spawn", id="simclr-ddp_spawn", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("method", "strategy"), DDP_RUNS)
def test_ddp_two_processes_on_cpu(method: str, strategy: str, images, tmp_path) -> None:
    kwargs = {"queue_size": 64} if method == "moco" else {}
    tiny = {**TINY, "batch_size": 4, "devices": 2, "strategy": strategy}  # gloo on CPU
    path = pretrain(images, method=method, out_dir=tmp_path, **tiny, **kwargs)
    _, sd, prov = read_encoder_file(path)
    assert prov["world_size"] == 2 and prov["global_batch_size"] == 8
    # each step gathered both processes' batches: 2 x 4 embeddings
    rows = [r for r in _metrics(tmp_path) if r.get("train/global_batch")]
    assert [float(r["train/global_batch"]) for r in rows] == [8.0]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)  # fmt: skip
    assert ckpt["global_step"] == 4  # 32 images / (2 processes x 4)
    # the encoder file holds the trained weights that came back from rank 0
    prefix = "encoder_q.backbone." if method == "moco" else "backbone."
    assert torch.equal(sd["conv1.weight"], ckpt["state_dict"][prefix + "conv1.weight"])
    if method == "moco":  # 4 steps x 8 gathered keys were enqueued (4 x 4 without the gather)
        assert int(ckpt["state_dict"]["queue_ptr"]) == 32


class _FixedViews(torch.utils.data.Dataset):
    """8 fixed pairs of (3, 4, 4) views."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.x1, self.x2 = (
            torch.randn(8, 3, 4, 4, generator=g),
            torch.randn(8, 3, 4, 4, generator=g),
        )

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"views": [self.x1[i], self.x2[i]], "label": 0}


def _tiny_method(method: str) -> L.LightningModule:
    # no BatchNorm, so a split batch computes exactly what the whole batch does
    from skintl.pretrain.heads import MLPHead
    from skintl.pretrain.moco import MoCo
    from skintl.pretrain.simclr import SimCLR

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16), torch.nn.ReLU())
    head = MLPHead(16, 16, 8, batch_norm=False)
    if method == "moco":
        return MoCo(backbone, head, dim=8, K=32, m=0.9, T=0.5, lr=0.5, weight_decay=0.0)
    return SimCLR(backbone, head, temperature=0.5, lr=0.5, weight_decay=0.0)


def _one_step(model: L.LightningModule, devices: int, strategy: str) -> None:
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, max_steps=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(_FixedViews(), batch_size=8 // devices, shuffle=False)
    trainer.fit(model, loader)


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_ddp_step_equals_the_single_process_step_on_the_global_batch(method: str) -> None:
    # 2 processes x 4 samples must take the same SGD step as 1 process x 8 samples: SimCLR via
    # all_gather(sync_grads=True) + DDP's gradient average, MoCo via DDP's average of local losses
    start = [p.detach().clone() for p in _tiny_method(method).parameters()]
    single, ddp = _tiny_method(method), _tiny_method(method)
    _one_step(single, 1, "auto")
    _one_step(ddp, 2, "ddp_fork")
    for p0, p1, p2 in zip(start, single.parameters(), ddp.parameters(), strict=True):
        assert not torch.equal(p0, p1) or not p1.requires_grad
        torch.testing.assert_close(p2, p1, rtol=0, atol=1e-6)  # float32 summation order
    if method == "moco":
        assert int(ddp.queue_ptr) == int(single.queue_ptr) == 8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_pretrain_on_gpu_in_mixed_precision(method, images, groups, tmp_path) -> None:
    """bf16/fp16 mixed precision and sync_batchnorm on one GPU; the encoder file is plain."""
    from skintl.pretrain.train import default_precision

    kwargs = MOCO if method == "moco" else {}
    run = {**TINY, "accelerator": "gpu"}
    path = pretrain(images, None, groups, method=method, out_dir=tmp_path, **run, **kwargs)
    arch, sd, prov = read_encoder_file(path)
    assert arch == "resnet18"
    assert prov["precision"] == default_precision("gpu") in ("bf16-mixed", "16-mixed")
    assert all(v.device.type == "cpu" and v.dtype != torch.bfloat16 for v in sd.values())
    net, _ = load_backbone("resnet18", str(path))  # strict: SyncBN keys equal BN keys
    assert isinstance(net.bn1, torch.nn.BatchNorm2d)
    losses = [float(r["train/loss_epoch"]) for r in _metrics(tmp_path) if r.get("train/loss_epoch")]
    assert len(losses) == 1 and np.isfinite(losses[0])


@pytest.mark.parametrize("arch", ["resnet18", "tf_efficientnet_lite0"])
def test_pretraining_starts_from_the_given_weights(arch: str, tmp_path: Path) -> None:
    """init: the backbone (and MoCo's key encoder) start as the given encoder file."""
    from skintl.encoders.backbones import build_backbone, save_encoder_file
    from skintl.pretrain import METHODS
    from skintl.pretrain.common import register_methods
    from skintl.pretrain.train import start_from

    torch.manual_seed(1)
    src = build_backbone(arch).state_dict()
    save_encoder_file(tmp_path / "init.pt", arch, src, {"method": "made-here"})
    register_methods()
    torch.manual_seed(2)
    module = METHODS.get("moco")(arch, None, queue_size=64)
    prov = start_from(module, arch, str(tmp_path / "init.pt"))
    assert prov["method"] == "made-here"
    got = module.backbone.state_dict()
    # a fresh build differs, so the equalities below are the init's doing
    fresh = build_backbone(arch).state_dict()
    assert any(not torch.equal(v, got[k]) for k, v in fresh.items() if v.is_floating_point())
    for k, v in src.items():
        assert torch.equal(got[k], v), k
    for (kq, q), (kk, kv) in zip(module.encoder_q.state_dict().items(),
                                 module.encoder_k.state_dict().items(), strict=True):  # fmt: skip
        assert kq == kk and torch.equal(q, kv), kq


def test_timm_arch_pretrains_from_an_encoder_file(images, tmp_path: Path) -> None:
    from skintl.encoders.backbones import build_backbone, save_encoder_file

    arch = "tf_efficientnet_lite0"
    torch.manual_seed(1)
    src = build_backbone(arch).state_dict()
    save_encoder_file(tmp_path / "init.pt", arch, src, {"method": "made-here"})
    path = pretrain(images, method="simclr", out_dir=tmp_path / "run",
                    init=str(tmp_path / "init.pt"), **{**TINY, "arch": arch})  # fmt: skip
    file_arch, sd, prov = read_encoder_file(path)
    assert file_arch == arch and prov["init"]["method"] == "made-here"
    moved = [k for k, v in sd.items() if v.is_floating_point() and not torch.equal(v, src[k])]
    assert moved  # trained from the init, not replaced by it
