"""NT-Xent and InfoNCE against slow loop references and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from skintl.pretrain.losses import info_nce, nt_xent


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Eq. 1 of SimCLR, one anchor at a time, in float64."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / t) / denom)
    return total / n


def info_nce_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float) -> float:
    q, k, queue = (F.normalize(x.double(), dim=1) for x in (q, k, queue))
    total = 0.0
    for i in range(len(q)):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ queue[j]) / t) for j in range(len(queue)))
        total += -math.log(pos / (pos + neg))
    return total / len(q)


@pytest.mark.parametrize(("b", "d", "t"), [(2, 3, 0.5), (5, 8, 0.1), (8, 16, 0.2)])
def test_nt_xent_matches_loop_reference(b: int, d: int, t: float) -> None:
    g = torch.Generator().manual_seed(b)
    z1, z2 = torch.randn(b, d, generator=g) * 3, torch.randn(b, d, generator=g)
    assert nt_xent(z1, z2, t).item() == pytest.approx(nt_xent_reference(z1, z2, t), rel=1e-5)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_closed_form_identical_orthogonal_views(t: float) -> None:
    # z1 == z2 = orthonormal rows: the positive has similarity 1, all 2B - 2 negatives 0, so
    # loss = -log(e^{1/T} / (e^{1/T} + (2B - 2) e^0)) for every anchor.
    b = 6
    z = torch.eye(b, 10) * 2.5  # scaled: nt_xent normalises
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * b - 2))
    # float32 log-softmax: ~1e-7 absolute error when the loss is near 0 (T = 0.1: 4.5e-4)
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_nt_xent_closed_form_collapse() -> None:
    # every embedding equal: all 2B - 1 candidates tie, loss = log(2B - 1) whatever T is
    z = torch.ones(4, 7)
    assert nt_xent(z, z, 0.1).item() == pytest.approx(math.log(7), rel=1e-5)


def test_nt_xent_pairs_rows_and_is_symmetric() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(nt_xent(z2, z1, 0.2).item(), rel=1e-6)
    # matched pairs score lower than the same views paired with the wrong rows
    aligned = nt_xent(z1, z1 + 0.01 * z2, 0.2)
    shuffled = nt_xent(z1, (z1 + 0.01 * z2).roll(1, dims=0), 0.2)
    assert aligned < shuffled
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent(z1, z2[:5], 0.2)


def test_nt_xent_gradients_flow_to_both_views() -> None:
    z1, z2 = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    nt_xent(z1, z2, 0.5).backward()
    assert z1.grad is not None and z2.grad is not None
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize(("n", "c", "k", "t"), [(3, 4, 5, 0.2), (8, 16, 32, 0.07)])
def test_info_nce_matches_loop_reference(n: int, c: int, k: int, t: float) -> None:
    g = torch.Generator().manual_seed(n)
    q, key, queue = (torch.randn(s, c, generator=g) for s in (n, n, k))
    assert info_nce(q, key, queue, t).item() == pytest.approx(
        info_nce_reference(q, key, queue, t), rel=1e-5
    )


def test_info_nce_closed_form() -> None:
    # q == k and the queue orthogonal to q: loss = -log(e^{1/T} / (e^{1/T} + K))
    t, k = 0.2, 5
    q = torch.eye(3, 8)
    queue = torch.eye(8)[3 : 3 + k]
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + k))
    assert info_nce(q, q, queue, t).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="queue"):
        info_nce(q, q, queue[:, :4], t)
