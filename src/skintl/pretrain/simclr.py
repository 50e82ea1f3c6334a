"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): backbone f, projection head g, NT-Xent over both views of a batch."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from skintl.encoders.backbones import build_backbone
from skintl.pretrain.common import METHODS, feature_dim, gather, sgd_cosine
from skintl.pretrain.heads import simclr_head
from skintl.pretrain.losses import nt_xent


class SimCLR(L.LightningModule):
    """SimCLR with negatives from every process.

    Under DDP the projections of all processes are gathered with
    ``self.all_gather(z, sync_grads=True)``, so each anchor sees ``2 W B - 2`` negatives, as on
    one device with the global batch ``W B``. Both views go through the backbone as one batch,
    so BatchNorm statistics span both views (as in SimCLR's global BN). The paper's LARS is
    replaced by SGD with momentum, so learning rates far above 1 (huge batches) need LARS.

    Args:
        backbone: ``(B, 3, H, W) -> (B, F)`` pooled features.
        head: projection ``(B, F) -> (B, D)``.
        temperature: NT-Xent ``T``.
        lr: SGD learning rate.
        weight_decay: SGD weight decay (SimCLR: 1e-6).
    """

    n_views = 2
    base_lr = 0.3  # SimCLR: 0.3 x batch / 256

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        temperature: float = 0.1,
        lr: float = 0.3,
        weight_decay: float = 1e-6,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "head"])
        self.backbone, self.head = backbone, head
        self.temperature, self.lr, self.weight_decay = temperature, lr, weight_decay

    def forward(self, x: Tensor) -> Tensor:
        """Projections ``(B, 3, H, W) -> (B, D)``."""
        out: Tensor = self.head(self.backbone(x))
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        x1, x2 = batch["views"]  # (B, 3, H, W) each
        z1, z2 = self(torch.cat([x1, x2])).chunk(2)  # (B, D) each
        z1, z2 = gather(self, z1, sync_grads=True), gather(self, z2, sync_grads=True)  # (WB, D)
        loss = nt_xent(z1, z2, self.temperature)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/global_batch", float(z1.shape[0]), on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        return sgd_cosine(self, self.parameters(), self.lr, self.weight_decay)


@METHODS.register("simclr")
def build_simclr(
    arch: str,
    num_classes: int | None = None,
    *,
    temperature: float = 0.1,
    proj_dim: int = 128,
    lr: float = 0.3,
    weight_decay: float = 1e-6,
) -> SimCLR:
    """SimCLR on a random-init ``arch`` backbone; ``num_classes`` is ignored (no labels)."""
    head = simclr_head(feature_dim(arch), out_dim=proj_dim)
    return SimCLR(build_backbone(arch), head, temperature, lr, weight_decay)
