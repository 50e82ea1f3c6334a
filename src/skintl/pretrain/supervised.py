"""Supervised pre-training: cross-entropy of a linear head on the source set's labels."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.nn.functional as F
from torch import Tensor, nn

from skintl.encoders.backbones import build_backbone
from skintl.pretrain.common import METHODS, feature_dim, sgd_cosine
from skintl.pretrain.heads import linear_head


class Supervised(L.LightningModule):
    """Backbone + linear classifier trained with (optionally label-smoothed) cross-entropy.

    Args:
        backbone: ``(B, 3, H, W) -> (B, F)`` pooled features.
        head: ``(B, F) -> (B, num_classes)`` logits.
        lr: SGD learning rate (ImageNet recipe: 0.1 for a batch of 256).
        weight_decay: SGD weight decay.
        label_smoothing: cross-entropy label smoothing.
    """

    n_views = 1
    base_lr = 0.1

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        lr: float = 0.1,
        weight_decay: float = 1e-4,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "head"])
        self.backbone, self.head = backbone, head
        self.lr, self.weight_decay, self.label_smoothing = lr, weight_decay, label_smoothing

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, 3, H, W) -> (B, num_classes)``."""
        out: Tensor = self.head(self.backbone(x))
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        x, y = batch["views"][0], batch["label"]  # (B, 3, H, W), (B,)
        logits = self(x)  # (B, num_classes)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train/acc", acc, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self) -> Any:
        return sgd_cosine(self, self.parameters(), self.lr, self.weight_decay)


@METHODS.register("supervised")
def build_supervised(
    arch: str,
    num_classes: int | None = None,
    *,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.0,
) -> Supervised:
    """Supervised pre-training of a random-init ``arch`` backbone on ``num_classes`` labels."""
    if not num_classes or num_classes < 2:
        raise ValueError(f"supervised pre-training needs labels of >= 2 classes; got {num_classes}")
    head = linear_head(feature_dim(arch), num_classes)
    return Supervised(build_backbone(arch), head, lr, weight_decay, label_smoothing)
