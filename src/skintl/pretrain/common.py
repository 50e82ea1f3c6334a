"""What the methods share: the ``METHODS`` table, the gather helper and the optimiser recipe."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import lightning as L
import torch
from torch import Tensor, nn

from skintl.encoders.backbones import pooled_dim
from skintl.registry import Registry

#: name -> factory ``(arch, num_classes=None, **hyper_parameters) -> LightningModule``. Each
#: module has class attributes ``n_views`` (views per sample), ``base_lr`` (SGD learning rate for
#: a total batch of 256, scaled linearly) and a ``backbone`` attribute (what gets saved).
METHODS: Registry[Callable[..., L.LightningModule]] = Registry("pre-training method")


def register_methods() -> None:
    """Import the method modules, which register themselves in :data:`METHODS`."""
    from skintl.pretrain import moco, simclr, supervised  # noqa: F401


class MethodModule(Protocol):
    """What :func:`skintl.pretrain.train.pretrain` reads of a method's LightningModule."""

    n_views: int
    base_lr: float
    lr: float
    hparams: Any

    @property
    def backbone(self) -> nn.Module: ...


def feature_dim(arch: str) -> int:
    """Pooled feature width of ``arch``'s backbone: 512 (ResNet-18), 2048 (ResNet-50), 1280
    (EfficientNet-Lite)."""
    return pooled_dim(arch)


def gather(module: L.LightningModule, x: Tensor, sync_grads: bool) -> Tensor:
    """Concatenate ``x`` ``(B, ...)`` from every process -> ``(W * B, ...)``; ``x`` when alone.

    With ``sync_grads`` gradients flow back to each process's own slice: every process computes
    the same global loss, the all-gather's backward sums their gradients, and DDP's average over
    the ``W`` processes then gives exactly the single-process gradient of the global batch.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    gathered: Tensor = module.all_gather(x, sync_grads=sync_grads)  # type: ignore[assignment]
    return gathered.flatten(0, 1) if gathered.ndim == x.ndim + 1 else gathered


def sgd_cosine(
    module: L.LightningModule,
    params: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> dict[str, Any]:
    """SGD with momentum and a per-step cosine decay to 0 over the whole run (MoCo v2's recipe).

    The schedule is a function of ``trainer.estimated_stepping_batches``, recomputed when a run
    resumes with a larger ``max_epochs``; only the step count comes from the checkpoint.
    """
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    total = max(1, int(module.trainer.estimated_stepping_batches))

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
