"""Pre-training dataset: views, labels, and same-lesion positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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


def _pairs_cross_classes(groups: np.ndarray, classes: np.ndarray) -> int:
    """Samples whose group holds another class (each such sample can draw a cross-class pair)."""
    frame = pd.DataFrame({"g": groups, "c": classes})
    return int((frame.groupby("g")["c"].transform("nunique") > 1).sum())


def test_lesion_positives_stay_within_one_lesion_and_class() -> None:
    from skintl.pretrain.source import positive_groups

    table = pd.DataFrame(
        {
            "patient_id": ["p1"] * 6 + ["p2"] * 3,
            "image": ["a"] * 4 + ["b"] * 2 + ["c"] * 3,
            "class": ["AK", "AK", "healthy", "healthy", "SK", "AK", "SK", "SK", "healthy"],
        }
    )
    lesion = positive_groups(table, "lesion")
    assert lesion is not None
    assert lesion[0] == lesion[1]  # two AK patches of photo a
    assert len({lesion[2], lesion[3], lesion[8]}) == 3  # healthy patches: each alone
    assert lesion[4] != lesion[5]  # photo b: an SK and an AK region are two lesions
    assert lesion[6] == lesion[7]
    # photos a and b show one lesion (lesion_id L1): its AK patches pair across photos
    ids = pd.Series({"a": "L1", "b": "L1"})
    same = positive_groups(table, "lesion", ids)
    assert same is not None and same[0] == same[1] == same[5]
    patient = positive_groups(table, "patient")
    assert patient is not None and patient[2] == patient[3] and patient[0] != patient[2]
    assert positive_groups(table, "none") is None
    for groups in (lesion, same, patient):
        assert _pairs_cross_classes(groups, table["class"].to_numpy()) == 0


def test_a_lesion_id_shared_by_two_patients_names_two_lesions() -> None:
    from skintl.pretrain.source import positive_groups

    # PAD-UFES-20 repeats lesion ids across patients: photo c of p2 also says lesion L1
    table = pd.DataFrame(
        {"patient_id": ["p1", "p1", "p2", "p2"], "image": ["a", "b", "c", "c"], "class": ["AK"] * 4}
    )
    groups = positive_groups(table, "lesion", pd.Series({"a": "L1", "b": "L1", "c": "L1"}))
    assert groups is not None
    assert groups[0] == groups[1] and groups[2] == groups[3]  # one lesion per patient
    assert groups[0] != groups[2]  # never a positive pair across two patients


def test_source_lesion_groups_never_join_two_classes(synthetic_root: Path, tmp_path: Path) -> None:
    from skintl.config import parse_config
    from skintl.labels import HEALTHY
    from skintl.pretrain.source import load_source
    from studyhelpers import tiny_config

    cfg = parse_config(tiny_config(synthetic_root))
    images, labels, groups, names = load_source(cfg, tmp_path, "patches", positives="lesion")
    assert groups is not None and len(groups) == len(images)
    assert _pairs_cross_classes(groups, labels) == 0
    healthy = labels == names.index(HEALTHY)
    _, sizes = np.unique(groups, return_counts=True)
    assert (sizes[np.unique(groups, return_inverse=True)[1]][healthy] == 1).all()
    assert (sizes > 1).any()  # lesions do have positives
