"""Pre-training dataset: views, labels, and same-lesion positives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skintl.pretrain.data import PretrainDataModule, PretrainDataset


def _identity(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.copy())


def _tagged(n: int) -> np.ndarray:
    """Image i is filled with the value i, so a view shows which sample it came from."""
    return np.repeat(np.arange(n, dtype=np.uint8), 4 * 4 * 3).reshape(n, 4, 4, 3)


def test_second_view_comes_from_another_sample_of_the_same_group(seeded: None) -> None:
    groups = np.array(["a", "a", "b", "b", "b", "c", "d", "d"])  # "c" is alone
    ds = PretrainDataset(_tagged(8), _identity, groups=groups)
    partners: dict[int, set[int]] = {i: set() for i in range(8)}
    for _ in range(30):
        for i in range(8):
            item = ds[i]
            v1, v2 = item["views"]
            src1, src2 = int(v1[0, 0, 0]), int(v2[0, 0, 0])  # read back from pixel values
            assert src1 == i and item["index"].tolist() == [i, src2]
            assert groups[src2] == groups[i]
            if i != 5:
                assert src2 != i
            partners[i].add(src2)
    assert partners[5] == {5}  # alone in its group: two views of itself
    assert partners[2] == {3, 4} and partners[0] == {1}  # every other member gets drawn


def test_without_groups_both_views_come_from_the_sample(seeded: None) -> None:
    ds = PretrainDataset(_tagged(4), _identity, labels=np.array([0, 1, 2, 1]))
    item = ds[3]
    assert [int(v[0, 0, 0]) for v in item["views"]] == [3, 3] and item["label"] == 1
    one = PretrainDataset(_tagged(4), _identity, n_views=1)[2]
    assert len(one["views"]) == 1 and one["label"] == -1


def test_invalid_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        PretrainDataset(np.zeros((2, 4, 4, 3), np.float32), _identity)
    with pytest.raises(ValueError, match="groups"):
        PretrainDataset(_tagged(4), _identity, groups=np.arange(3))
    with pytest.raises(ValueError, match="n_views"):
        PretrainDataset(_tagged(4), _identity, n_views=3)


def test_datamodule_batches(images: np.ndarray, labels: np.ndarray, augment, seeded) -> None:
    dm = PretrainDataModule(images, labels, n_views=2, augment=augment, batch_size=8)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(images) // 8
    b = batches[0]
    assert [v.shape for v in b["views"]] == [(8, 3, 32, 32)] * 2
    assert b["label"].shape == (8,) and b["index"].shape == (8, 2)
    too_big = PretrainDataModule(images, batch_size=len(images) + 1)
    with pytest.raises(ValueError, match="batch_size"):
        too_big.train_dataloader()
