"""Projection and classification heads that sit on a backbone's pooled features ``(B, F)``."""

from __future__ import annotations

from torch import Tensor, nn


class MLPHead(nn.Module):
    """Two-layer MLP ``Linear -> [BatchNorm] -> ReLU -> Linear``: ``(B, in_dim) -> (B, out_dim)``.

    Args:
        in_dim: backbone feature width (512 for ResNet-18, 2048 for ResNet-50).
        hidden_dim: width of the hidden layer.
        out_dim: projection width.
        batch_norm: put a BatchNorm1d after the first layer (SimCLR's code does; MoCo v2 does not).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim) -> (B, out_dim)``."""
        out: Tensor = self.net(x)
        return out


def simclr_head(in_dim: int, out_dim: int = 128, hidden_dim: int | None = None) -> MLPHead:
    """SimCLR's projection head g (Chen et al. 2020, sec. 2.1): hidden width = ``in_dim``, BN."""
    return MLPHead(in_dim, hidden_dim or in_dim, out_dim, batch_norm=True)


def moco_v2_head(in_dim: int, out_dim: int = 128) -> MLPHead:
    """MoCo v2's MLP head (Chen et al. 2020, "Improved baselines"): ``fc -> ReLU -> fc``, no BN."""
    return MLPHead(in_dim, in_dim, out_dim, batch_norm=False)


def linear_head(in_dim: int, num_classes: int) -> nn.Linear:
    """Linear classifier for supervised pre-training: ``(B, in_dim) -> (B, num_classes)``."""
    return nn.Linear(in_dim, num_classes)
