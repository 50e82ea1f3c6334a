"""Pre-training data: a Dataset over a uint8 image array and a LightningDataModule around it.

With ``groups`` (lesion or patient ids), the second view of a sample is an augmented view of a
*different* sample of the same group: two patches of one lesion form a positive pair, as in
multi-instance contrastive learning (Azizi et al. 2021, "Big self-supervised models advance
medical image classification"). Samples alone in their group fall back to two views of
themselves.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from skintl.pretrain.augment import AugmentConfig, Transform, view_transform

log = logging.getLogger(__name__)


def _check_array(name: str, arr: np.ndarray | None, n: int) -> np.ndarray | None:
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must be 1-D with one entry per image ({n}); got {arr.shape}")
    return arr


class PretrainDataset(Dataset[dict[str, Any]]):
    """Views of uint8 images ``(N, H, W, 3)``, with optional labels and group ids.

    Each item is ``{"views": [v_1, ..., v_n], "label": int, "index": (n,) int64}`` where each view
    is ``transform(image)``, ``label`` is -1 without labels, and ``index`` holds the sample each
    view came from. View 1 is sample ``i``; view 2 (if ``n_views == 2``) is sample ``i`` again, or,
    with ``groups``, a uniformly drawn other member of ``i``'s group.

    Args:
        images: uint8 array ``(N, H, W, 3)`` of patches or whole images.
        transform: uint8 ``(H, W, 3)`` -> tensor, e.g. :func:`view_transform`.
        labels: optional int array ``(N,)``.
        groups: optional array ``(N,)`` of lesion or patient ids (any hashable dtype).
        n_views: 1 (supervised) or 2 (contrastive).
    """

    def __init__(
        self,
        images: np.ndarray,
        transform: Transform,
        labels: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        n_views: int = 2,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}"
            )
        if n_views not in (1, 2):
            raise ValueError(f"n_views must be 1 or 2, got {n_views}")
        n = len(images)
        self.images, self.transform, self.n_views = images, transform, n_views
        self.labels = _check_array("labels", labels, n)
        groups = _check_array("groups", groups, n)
        self._members: list[np.ndarray] | None = None
        if groups is not None:
            _, inverse = np.unique(groups, return_inverse=True)
            members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
            self._members = [members[g] for g in inverse]  # members of each sample's group
            alone = sum(len(m) == 1 for m in members)
            log.info("%d groups for %d samples; %d samples alone in their group", len(members), n,
                     alone)  # fmt: skip

    def __len__(self) -> int:
        return len(self.images)

    def partner(self, i: int) -> int:
        """Index of view 2's sample: another member of ``i``'s group, else ``i``."""
        if self._members is None or len(self._members[i]) == 1:
            return i
        others = self._members[i][self._members[i] != i]
        return int(others[int(torch.randint(len(others), ()).item())])

    def __getitem__(self, i: int) -> dict[str, Any]:
        idx = [i] if self.n_views == 1 else [i, self.partner(i)]
        # a copy: images may be a read-only memory map, which torch warns about and cannot share
        views: list[Tensor] = [self.transform(np.array(self.images[j])) for j in idx]
        label = -1 if self.labels is None else int(self.labels[i])
        return {"views": views, "label": label, "index": torch.tensor(idx)}


class PretrainDataModule(L.LightningDataModule):
    """Training loader over :class:`PretrainDataset` with :func:`view_transform` augmentations.

    Batches are ``{"views": [(B, 3, S, S)] * n_views, "label": (B,), "index": (B, n_views)}``.
    Incomplete last batches are dropped so every process gathers equally sized batches
    (``all_gather`` needs equal shapes). Under DDP, Lightning adds the DistributedSampler.

    Args:
        images, labels, groups, n_views: as for :class:`PretrainDataset`.
        augment: augmentation config.
        batch_size: per-process batch size.
        num_workers: loader worker processes.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        n_views: int = 2,
        augment: AugmentConfig | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = PretrainDataset(
            images, view_transform(augment), labels=labels, groups=groups, n_views=n_views
        )
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        world = self.trainer.world_size if self.trainer is not None else 1
        per_process = math.ceil(len(self.dataset) / world)
        if per_process < self.batch_size:
            raise ValueError(
                f"{len(self.dataset)} images over {world} process(es) is {per_process} per "
                f"process, fewer than batch_size={self.batch_size}: lower the batch size"
            )
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
