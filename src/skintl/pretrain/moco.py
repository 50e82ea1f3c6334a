"""MoCo v2 (He et al. 2020, "Momentum Contrast"; Chen et al. 2020, "Improved Baselines with
Momentum Contrastive Learning"): query encoder, momentum key encoder, queue of negative keys."""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skintl.encoders.backbones import build_backbone
from skintl.pretrain.common import METHODS, feature_dim, gather, sgd_cosine
from skintl.pretrain.heads import moco_v2_head
from skintl.pretrain.losses import info_nce

log = logging.getLogger(__name__)


class MoCo(L.LightningModule):
    """MoCo v2 in the paper's notation (``encoder_q``, ``encoder_k``, ``K``, ``m``, ``T``).

    ``encoder_k`` starts as a copy of ``encoder_q`` (backbone + MLP head), gets no gradients and
    follows ``theta_k <- m theta_k + (1 - m) theta_q`` before each step. Keys of every process
    are gathered and enqueued, so all processes hold the same queue.

    BatchNorm: under DDP on GPUs, :func:`skintl.pretrain.train.pretrain` turns on Lightning's
    ``sync_batchnorm`` (statistics over the global batch, as solo-learn and MoCo v3 do). The
    paper's alternative is shuffle-BN, which computes the keys' statistics on a shuffled split
    so that queries and their positive keys never share a BN batch; it is not implemented here,
    so on one device (and with SyncBN) the BN statistics of queries and keys cover the same
    images, the "leak" shuffle-BN removes. On CPU, SyncBatchNorm is unavailable and BN stays
    per process.

    Args:
        backbone: ``(B, 3, H, W) -> (B, F)`` pooled features.
        head: ``(B, F) -> (B, dim)``.
        dim: output width ``C`` of ``head``.
        K: queue size (MoCo: 65536; keep it below the number of training images).
        m: key-encoder momentum.
        T: softmax temperature (MoCo v2: 0.2).
        lr: SGD learning rate (MoCo: 0.03 for a batch of 256).
        weight_decay: SGD weight decay (MoCo: 1e-4).
    """

    n_views = 2
    base_lr = 0.03  # MoCo: 0.03 x batch / 256

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        dim: int = 128,
        K: int = 4096,
        m: float = 0.999,
        T: float = 0.2,
        lr: float = 0.03,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "head"])
        self.K, self.m, self.T, self.lr, self.weight_decay = K, m, T, lr, weight_decay
        self.encoder_q = nn.Sequential(OrderedDict(backbone=backbone, head=head))
        self.encoder_k = copy.deepcopy(self.encoder_q).requires_grad_(False)
        self.queue: Tensor
        self.queue_ptr: Tensor
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=1))  # KxC
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def backbone(self) -> nn.Module:
        """The query encoder's backbone: what MoCo transfers downstream."""
        return self.encoder_q[0]

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``theta_k <- m theta_k + (1 - m) theta_q`` for every parameter."""
        for param_q, param_k in zip(
            self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True
        ):
            param_k.mul_(self.m).add_(param_q.detach(), alpha=1.0 - self.m)

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: Tensor) -> None:
        """Replace the ``N`` oldest keys by ``keys`` ``(N, C)``, wrapping around the end."""
        n = keys.shape[0]
        if n > self.K:
            raise ValueError(f"{n} keys per step exceed the queue size K={self.K}")
        slots = (self.queue_ptr + torch.arange(n, device=keys.device)) % self.K  # (N,)
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % self.K)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        im_q, im_k = batch["views"]  # (N, 3, H, W) each
        q = F.normalize(self.encoder_q(im_q), dim=1)  # NxC
        with torch.no_grad():
            self.momentum_update()
            k = F.normalize(self.encoder_k(im_k), dim=1)  # NxC
        loss = info_nce(q, k, self.queue.clone(), self.T)  # logits Nx(1+K)
        keys = gather(self, k, sync_grads=False)  # (W N)xC
        self.dequeue_and_enqueue(keys)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train/global_batch", float(keys.shape[0]), on_step=False, on_epoch=True)
        return loss

    def on_train_start(self) -> None:
        n = len(self.trainer.train_dataloader.dataset)  # type: ignore[union-attr]
        if self.K >= n:
            log.warning("MoCo queue K=%d >= %d training images: the queue holds stale keys of "
                        "the same images; lower queue_size", self.K, n)  # fmt: skip

    def configure_optimizers(self) -> Any:
        return sgd_cosine(self, self.encoder_q.parameters(), self.lr, self.weight_decay)


@METHODS.register("moco")
def build_moco(
    arch: str,
    num_classes: int | None = None,
    *,
    queue_size: int = 4096,
    key_momentum: float = 0.999,
    temperature: float = 0.2,
    proj_dim: int = 128,
    lr: float = 0.03,
    weight_decay: float = 1e-4,
) -> MoCo:
    """MoCo v2 on a random-init ``arch`` backbone; ``num_classes`` is ignored (no labels)."""
    head = moco_v2_head(feature_dim(arch), out_dim=proj_dim)
    return MoCo(
        build_backbone(arch), head, proj_dim, queue_size, key_momentum, temperature, lr,
        weight_decay,
    )  # fmt: skip
