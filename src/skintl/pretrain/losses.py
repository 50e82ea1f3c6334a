"""Contrastive losses as pure functions (tensors in, scalar loss out).

Both losses compute cosine similarities in float32 with autocast off: with a temperature of
0.1 the logits reach 10, where bf16's three significant digits would cost ~0.05 per logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020, eq. 1).

    The ``2B`` embeddings ``z = [z1; z2]`` are L2-normalised; anchor ``i`` has one positive (the
    other view of the same image) and ``2B - 2`` negatives (every other embedding except itself):
    ``l_i = -log(exp(s_ip / T) / sum_{k != i} exp(s_ik / T))`` with cosine similarity ``s``. The
    loss is the mean of ``l_i`` over all ``2B`` anchors.

    Args:
        z1: first views' projections, shape ``(B, D)``; need not be normalised.
        z2: second views' projections, shape ``(B, D)``; row ``b`` pairs with ``z1[b]``.
        temperature: ``T`` > 0.

    Returns:
        Scalar loss (float32).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D); got {tuple(z1.shape)}, {tuple(z2.shape)}")
    b = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2B, D)
        sim = z @ z.T / temperature  # (2B, 2B)
        self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))
        idx = torch.arange(b, device=z.device)
        targets = torch.cat([idx + b, idx])  # (2B,): the other view of the same image
        return F.cross_entropy(sim, targets)


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """MoCo's InfoNCE loss (He et al. 2020, eq. 1) with a queue of negatives.

    Logits are ``[q . k, q . queue^T] / T``, shape ``(N, 1 + K)``, with the positive in column 0;
    the loss is cross-entropy against label 0. All inputs are L2-normalised here (MoCo normalises
    ``q``, ``k`` and the queue; doing it again is harmless).

    Args:
        q: queries, shape ``(N, C)``.
        k: positive keys, shape ``(N, C)``; no gradient is expected to flow into them.
        queue: negative keys, shape ``(K, C)``.
        temperature: ``T`` > 0.

    Returns:
        Scalar loss (float32).
    """
    if q.shape != k.shape or q.ndim != 2 or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"need q, k (N, C) and queue (K, C); got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(queue.shape)}"
        )
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        queue = F.normalize(queue.float(), dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
        l_neg = q @ queue.T  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (N, 1 + K)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels)
