"""Methods: registry, shapes, MoCo's queue and momentum rule, and "loss goes down"."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skintl.encoders.backbones import check_backbone_keys
from skintl.pretrain import METHODS
from skintl.pretrain.augment import AugmentConfig, view_transform
from skintl.pretrain.heads import MLPHead
from skintl.pretrain.losses import info_nce
from skintl.pretrain.moco import MoCo

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def test_registry_lists_methods_and_rejects_unknown_names() -> None:
    assert METHODS.names() == ["moco", "simclr", "supervised"]
    with pytest.raises(KeyError, match="valid names: moco, simclr, supervised"):
        METHODS.get("byol")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("method", ["supervised", "simclr", "moco"])
def test_factories_build_saveable_backbones(method: str, arch: str) -> None:
    model = METHODS.get(method)(
        arch, num_classes=3, **({"queue_size": 64} if method == "moco" else {})
    )
    check_backbone_keys(arch, model.backbone.state_dict(), source=method)
    width = 512 if arch == "resnet18" else 2048
    with torch.no_grad():
        feats = model.backbone.eval()(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, width)


def test_supervised_needs_classes() -> None:
    with pytest.raises(ValueError, match="labels"):
        METHODS.get("supervised")("resnet18", num_classes=None)


def _tiny_moco(k: int = 10, dim: int = 4, m: float = 0.9) -> MoCo:
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 8))
    return MoCo(backbone, MLPHead(8, 8, dim), dim=dim, K=k, m=m)


def test_moco_queue_wraps_and_replaces_the_oldest_slots() -> None:
    moco = _tiny_moco(k=10, dim=4)
    start = moco.queue.clone()
    keys = [torch.full((4, 4), float(i + 1)) for i in range(3)]  # batch i has value i + 1
    moco.dequeue_and_enqueue(keys[0])
    assert int(moco.queue_ptr) == 4
    moco.dequeue_and_enqueue(keys[1])
    assert int(moco.queue_ptr) == 8
    moco.dequeue_and_enqueue(keys[2])  # fills slots 8, 9, then wraps to 0, 1
    assert int(moco.queue_ptr) == 2
    col = moco.queue[:, 0].tolist()
    assert col == [3, 3, 1, 1, 2, 2, 2, 2, 3, 3]
    moco2 = _tiny_moco(k=10, dim=4)
    moco2.queue.copy_(start)
    moco2.dequeue_and_enqueue(keys[0][:3])
    assert torch.equal(moco2.queue[3:], start[3:])  # untouched slots keep their keys
    with pytest.raises(ValueError, match="exceed"):
        moco.dequeue_and_enqueue(torch.zeros(11, 4))


def test_moco_key_encoder_follows_the_momentum_rule() -> None:
    torch.manual_seed(0)
    moco = _tiny_moco(m=0.9)
    for p in moco.encoder_k.parameters():  # make k differ from q
        p.data.add_(torch.randn_like(p))
    q_before = [p.detach().clone() for p in moco.encoder_q.parameters()]
    k_before = [p.detach().clone() for p in moco.encoder_k.parameters()]
    opt = torch.optim.SGD(moco.encoder_q.parameters(), lr=0.5)
    batch = {"views": [torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)]}
    loss = moco.training_step(batch, 0)
    loss.backward()
    opt.step()
    # the update uses theta_q before this step's optimiser update; no gradient reaches theta_k.
    # Tolerance: a few float32 ulps of values of order 1.
    for pq, pk_old, pk in zip(q_before, k_before, moco.encoder_k.parameters(), strict=True):
        assert pk.grad is None and not pk.requires_grad
        torch.testing.assert_close(pk.detach(), 0.9 * pk_old + 0.1 * pq, rtol=0, atol=1e-6)
    moved = [
        not torch.equal(a, b) for a, b in zip(q_before, moco.encoder_q.parameters(), strict=True)
    ]
    assert all(moved)


def _fixed_batch(images: np.ndarray, labels: np.ndarray, n: int = 8) -> dict:
    torch.manual_seed(0)
    t = view_transform(AugmentConfig(size=32))
    views = [torch.stack([t(img) for img in images[:n]]) for _ in range(2)]
    return {"views": views, "label": torch.as_tensor(labels[:n])}


def _moco_eval_loss(moco: MoCo, batch: dict, queue: torch.Tensor) -> float:
    # a fixed queue, since training overwrites the live one with keys of this very batch
    with torch.no_grad():
        q = F.normalize(moco.encoder_q(batch["views"][0]), dim=1)
        k = F.normalize(moco.encoder_k(batch["views"][1]), dim=1)
        return info_nce(q, k, queue, moco.T).item()


@pytest.mark.parametrize("method", ["supervised", "simclr", "moco"])
def test_loss_goes_down_in_20_steps(method: str, images, labels) -> None:
    torch.manual_seed(0)
    # K >> 20 steps x 8 keys, so the live queue holds few stale keys of this very batch
    kwargs = {"queue_size": 1024, "key_momentum": 0.9} if method == "moco" else {}
    model = METHODS.get(method)("resnet18", num_classes=3, **kwargs)
    batch = _fixed_batch(images, labels)
    queue0 = model.queue.clone() if method == "moco" else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)

    def loss_now() -> float:
        if method == "moco":
            return _moco_eval_loss(model, batch, queue0)
        with torch.no_grad():
            return model.training_step(batch, 0).item()

    before = loss_now()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(20):
            opt.zero_grad()
            model.training_step(batch, step).backward()
            opt.step()
    after = loss_now()
    assert after < 0.8 * before, (before, after)
