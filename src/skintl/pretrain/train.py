"""Run one pre-training method with Lightning's Trainer and write skintl's encoder file.

Layout of ``out_dir``::

    checkpoints/last.ckpt        full training state after the latest epoch (resume point)
    logs/csv/version_*/          CSVLogger metrics.csv and hparams.yaml
    logs/tensorboard/version_*/  TensorBoard events
    encoder.pt                   backbone state dict + provenance (save_encoder_file)
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from skintl.encoders.backbones import load_backbone, save_encoder_file
from skintl.encoders.taps import input_norm
from skintl.pretrain.augment import AugmentConfig
from skintl.pretrain.common import METHODS, MethodModule, register_methods
from skintl.pretrain.data import PretrainDataModule

log = logging.getLogger(__name__)

#: module attributes copied into the encoder file's provenance when a method has them
_PROVENANCE_ATTRS = {"temperature": "temperature", "T": "temperature", "K": "queue_size",
                     "m": "key_momentum", "weight_decay": "weight_decay"}  # fmt: skip


def uses_cuda(accelerator: str) -> bool:
    """Whether ``accelerator`` ("auto", "cpu", "gpu", "cuda", ...) resolves to CUDA here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def default_precision(accelerator: str) -> str:
    """``"bf16-mixed"`` on CUDA GPUs that support it, ``"16-mixed"`` on older ones, else fp32."""
    if not uses_cuda(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class EpochLog(Callback):
    """One log line per epoch (its metrics and seconds), for logs that are files: Lightning's
    bar is a stream of carriage returns there."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = ", ".join(
            f"{k}={float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
        )
        log.info("epoch %d/%d: %s (%.1f s)", trainer.current_epoch + 1, trainer.max_epochs,
                 metrics or "no metrics", time.perf_counter() - self._start)  # fmt: skip


def _trainer(
    out_dir: Path, max_epochs: int, accelerator: str, devices: Any, strategy: str,
    num_nodes: int, precision: str, progress_bar: bool, callbacks: Sequence[Callback],
    steps_per_epoch: int,
) -> L.Trainer:  # fmt: skip
    ckpt = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", save_top_k=0, save_last=True, enable_version_counter=False
    )
    # a bar only on a terminal; elsewhere (files, pipes) one line per epoch
    bar = progress_bar and sys.stderr.isatty()
    epoch_log = [] if bar or not progress_bar else [EpochLog()]
    loggers = [
        CSVLogger(out_dir / "logs", name="csv"),
        TensorBoardLogger(out_dir / "logs", name="tensorboard"),
    ]
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=max_epochs,
        # SyncBatchNorm needs CUDA; Lightning applies it only under DDP-type strategies
        sync_batchnorm=uses_cuda(accelerator),
        callbacks=[ckpt, LearningRateMonitor(logging_interval="step"), *callbacks, *epoch_log],
        logger=loggers,
        enable_progress_bar=bar,
        # Lightning warns when an epoch has fewer batches than the logging interval
        log_every_n_steps=max(1, min(10, steps_per_epoch)),
        default_root_dir=out_dir,
    )


def start_from(module: Any, arch: str, init: str) -> dict[str, Any]:
    """Load ``init`` (``"random"``, ``"imagenet"`` or an encoder file) into ``module.backbone``,
    and into MoCo's key encoder, which must start equal to the query encoder; its provenance."""
    if init == "random":
        return {"method": "random"}
    net, provenance = load_backbone(arch, init)
    module.backbone.load_state_dict(net.state_dict(), strict=True)
    if hasattr(module, "encoder_k"):
        module.encoder_k.load_state_dict(module.encoder_q.state_dict(), strict=True)
    return provenance


def pretrain(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    method: str = "simclr",
    arch: str = "resnet18",
    out_dir: Path | str = "pretrain",
    max_epochs: int = 100,
    batch_size: int = 256,
    lr: float | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str | None = None,
    seed: int = 0,
    resume: bool = True,
    *,
    augment: AugmentConfig | None = None,
    num_workers: int = 4,
    progress_bar: bool = True,
    callbacks: Sequence[Callback] = (),
    init: str = "random",
    record: Mapping[str, Any] | None = None,
    **method_kwargs: Any,
) -> Path:
    """Pre-train ``arch`` with ``method`` on ``images``; write and return ``out_dir/encoder.pt``.

    Args:
        images: uint8 ``(N, H, W, 3)`` patches or images of the source set.
        labels: int ``(N,)`` class labels; required by ``"supervised"``, ignored otherwise.
        groups: ``(N,)`` lesion or patient ids; for contrastive methods, view 2 comes from another
            sample of the same group (multi-instance positives). Ignored by ``"supervised"``.
        method: a name in :data:`METHODS` (``"supervised"``, ``"simclr"``, ``"moco"``).
        arch: backbone name (``"resnet18"``, ``"resnet50"``).
        out_dir: run folder (see the module docstring).
        max_epochs: total epochs, counting those of a resumed run.
        batch_size: per-process batch size; the global batch is ``batch_size x world size``.
        lr: SGD learning rate; default the method's ``base_lr x global batch / 256``.
        accelerator, devices, strategy, num_nodes: passed to ``lightning.Trainer`` (e.g.
            ``"gpu", 4, "ddp"``; ``"ddp_spawn"`` also works from notebooks and tests).
        precision: Lightning precision; default :func:`default_precision`.
        seed: seeds weights, augmentations and loader workers.
        resume: continue from ``out_dir/checkpoints/last.ckpt`` when it exists. With
            ``resume=False`` an existing checkpoint is an error, never silently overwritten.
        augment: augmentation config (crop size, colour strength, ...).
        num_workers: data loader workers per process.
        progress_bar: show progress: Lightning's bar on a terminal, else a log line per epoch.
        callbacks: extra Lightning callbacks.
        init: the backbone's starting weights: ``"random"``, ``"imagenet"`` or a skintl encoder
            file (Azizi et al. 2021; REMEDIS, Azizi et al. 2023: supervised ImageNet weights,
            then contrastive pre-training in the domain). A resumed run continues its checkpoint.
        record: extra provenance for the encoder file, e.g. the source set's ``patients`` and
            ``dataset`` (:func:`skintl.pretrain.patients.source_record`).
        **method_kwargs: the method factory's hyper-parameters (e.g. ``temperature``,
            ``queue_size``, ``key_momentum``, ``proj_dim``, ``weight_decay``).

    Returns:
        Path of the encoder file (written by global rank 0 only).
    """
    register_methods()
    factory = METHODS.get(method)
    out_dir = Path(out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.exists() and not resume:
        raise FileExistsError(f"{last} exists: pass resume=True to continue it, or a new out_dir")
    images = np.asarray(images)
    num_classes = None if labels is None else int(np.max(labels)) + 1
    augment = augment or AugmentConfig()
    precision = precision or default_precision(accelerator)

    L.seed_everything(seed, workers=True)
    trainer = _trainer(out_dir, max_epochs, accelerator, devices, strategy, num_nodes, precision,
                       progress_bar, callbacks, len(images) // batch_size)  # fmt: skip
    kwargs = dict(method_kwargs) if lr is None else {**method_kwargs, "lr": lr}
    module = factory(arch, num_classes, **kwargs)
    model = cast(MethodModule, module)
    init_provenance = start_from(module, arch, init)
    mean, std = input_norm(model.backbone)
    augment = dataclasses.replace(augment, mean=mean, std=std)
    if lr is None:
        model.lr = model.base_lr * batch_size * trainer.world_size / 256
        model.hparams["lr"] = model.lr
    if model.n_views == 1 and groups is not None:
        log.info("%s uses one view per sample: groups are ignored", method)
    data = PretrainDataModule(
        images,
        labels=labels,
        groups=groups if model.n_views == 2 else None,
        n_views=model.n_views,
        augment=augment,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    ckpt_path = str(last) if last.exists() else None
    log.info("pre-training %s %s on %d images for %d epochs (%s)%s", method, arch, len(images),
             max_epochs, precision, f", resuming from {last}" if ckpt_path else "")  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - start

    path = out_dir / "encoder.pt"
    if trainer.is_global_zero:
        provenance = {
            "method": method, "arch": arch, "epochs": max_epochs, "batch_size": batch_size,
            "global_batch_size": batch_size * trainer.world_size, "world_size": trainer.world_size,
            "lr": float(model.lr), "precision": str(precision), "seconds": round(seconds, 2),
            "images": len(images), "seed": seed, "resumed_from": ckpt_path or "",
            "crop_size": augment.size, "color_strength": augment.color_strength,
            "same_group_positives": groups is not None and model.n_views == 2,
            "init": init_provenance,
        }  # fmt: skip
        hparams = {k: v for k, v in module.hparams.items() if isinstance(v, int | float | str)}
        provenance.update({k: v for k, v in hparams.items() if k not in provenance})
        for attr, key in _PROVENANCE_ATTRS.items():
            if hasattr(module, attr):
                provenance[key] = float(getattr(module, attr))
        provenance.update(record or {})
        save_encoder_file(path, arch, model.backbone.state_dict(), provenance)
        log.info("wrote %s (%.1f s)", path, seconds)
    return path
