"""End-to-end fine-tuning of an encoder truncated after one tap, as a scikit-learn classifier.

Unlike the other classifiers, which take cached pooled features ``(N, d)``, this one takes the
PATCHES ``(N, H, W, 3)`` uint8 and trains ``stem..layer`` + global average pooling + a head with
Lightning's Trainer. Early stopping watches the loss on a validation split made BY PATIENT.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from skintl.encoders.backbones import layer_info, load_backbone
from skintl.encoders.taps import truncated_backbone
from skintl.evaluation.splits import validation_split
from skintl.features.extract import to_input
from skintl.pretrain.train import default_precision, uses_cuda


def truncate(net: nn.Module, layer: str) -> nn.Sequential:
    """Normalisation + ``net`` up to the tap ``layer`` (shared weights): (B, 3, H, W) in [0, 1]
    -> (B, C_layer, H', W')."""
    return truncated_backbone(net, layer)


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C) spatial mean, as LayerTaps pools (and, unlike AdaptiveAvgPool2d,
    with a deterministic CUDA backward)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


def dihedral(x: Tensor) -> Tensor:
    """Random flip and multiple of 90 degrees per patch of (B, H, W, 3); colour is untouched."""
    flip = torch.rand(len(x), device=x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
    if x.shape[1] != x.shape[2]:
        return x  # rotations need square patches
    k = torch.randint(4, (len(x),), device=x.device)
    out = x.clone()
    for r in (1, 2, 3):
        out[k == r] = torch.rot90(x[k == r], r, dims=(1, 2))
    return out


class _FineTuneModule(L.LightningModule):
    """Network (B, H, W, 3) uint8 -> (B, K) logits; keeps the weights of the best val loss."""

    def __init__(self, network: nn.Sequential, est: FineTuneClassifier) -> None:
        super().__init__()
        self.network, self.est = network, est
        self.val_curve: list[float] = []
        self.best_state: dict[str, Tensor] | None = None
        self._val_sum, self._val_n = 0.0, 0
        self.train()  # load_backbone returns eval mode, and Lightning keeps submodules' modes

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.network(to_input(x, self.est.input_size))
        return out

    def train(self, mode: bool = True) -> _FineTuneModule:
        super().train(mode)
        if mode and self.est.freeze_bn:  # running statistics stay those of the pre-training
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # (B, H, W, 3) uint8, (B,)
        logits = self(dihedral(x) if self.est.augment else x)  # (B, K)
        return F.cross_entropy(logits.float(), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        loss = F.cross_entropy(self(x).float(), y, reduction="sum")
        self._val_sum, self._val_n = self._val_sum + float(loss), self._val_n + len(y)

    def on_validation_epoch_end(self) -> None:
        loss = self._val_sum / max(self._val_n, 1)
        self._val_sum, self._val_n = 0.0, 0
        self.log("val_loss", loss, prog_bar=True)
        if not self.val_curve or loss < min(self.val_curve):
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()
            }
        self.val_curve.append(loss)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.network.parameters(), lr=self.est.lr, weight_decay=self.est.weight_decay
        )


@contextlib.contextmanager
def _lightning_context(quiet: bool) -> Iterator[str]:
    """A temporary root folder; no banner and no known-harmless warnings per fit (one per fold).

    Also restores the process-wide deterministic-algorithms flag that ``deterministic=True`` sets.
    """
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    with tempfile.TemporaryDirectory(prefix="skintl-finetune-") as tmp, warnings.catch_warnings():
        for msg in ("does not have many workers", r"module\(s\) in eval mode", "LeafSpec"):
            warnings.filterwarnings("ignore", message=f".*{msg}.*")
        logger.setLevel(logging.WARNING if quiet else level)
        try:
            yield tmp
        finally:
            logger.setLevel(level)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


def _check_patches(X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[-1] != 3 or X.dtype != np.uint8:
        raise ValueError(
            f"FineTuneClassifier takes uint8 patches (N, H, W, 3), not {X.dtype} {X.shape}"
        )
    return X


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """ResNet ``stem..layer`` + global average pooling + head, all trained with cross-entropy.

    ``X`` is uint8 patches (N, H, W, 3), never feature vectors. Training: AdamW, random flips
    and 90-degree rotations (no colour change: colour is diagnostic), early stopping on the
    loss of a validation split made BY PATIENT, and the weights of the best validation epoch.

    Args:
        arch, weights: backbone and its start (anything :func:`load_backbone` accepts).
        layer: the last block kept (``stem``, ``layer1`` .. ``layer4``).
        head_hidden: 0 for a linear head, else the units of one hidden ReLU layer.
        epochs, batch_size, lr, weight_decay: the training run (``epochs`` is the maximum).
        freeze_bn: keep BatchNorm running statistics fixed (affine parameters still train).
        validation_fraction, patience: held-out patients and epochs without improvement.
        augment: random flips and 90-degree rotations during training.
        input_size: optional resize of the patches before the network.
        seed: seeds the split, the head, the shuffling and the augmentations.
        accelerator, precision: Lightning's; default precision bf16-mixed on GPU, else 32-true.
        num_workers, progress_bar: data loader workers and Lightning's progress bar.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        weights: str = "random",
        layer: str = "layer2",
        head_hidden: int = 0,
        epochs: int = 5,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        freeze_bn: bool = False,
        validation_fraction: float = 0.2,
        patience: int = 2,
        augment: bool = True,
        input_size: int | None = None,
        seed: int = 0,
        accelerator: str = "auto",
        precision: str | None = None,
        num_workers: int = 0,
        progress_bar: bool = False,
    ) -> None:
        self.arch = arch
        self.weights = weights
        self.layer = layer
        self.head_hidden = head_hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.freeze_bn = freeze_bn
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.input_size = input_size
        self.seed = seed
        self.accelerator = accelerator
        self.precision = precision
        self.num_workers = num_workers
        self.progress_bar = progress_bar

    def build_network(self, n_classes: int) -> nn.Sequential:
        """(B, 3, H, W) -> (B, n_classes) logits: truncated backbone, pooling, head."""
        net, _ = load_backbone(self.arch, self.weights)
        c = layer_info(self.arch)[self.layer].channels
        h = self.head_hidden
        head = (
            nn.Linear(c, n_classes)
            if h <= 0
            else nn.Sequential(nn.Linear(c, h), nn.ReLU(inplace=True), nn.Linear(h, n_classes))
        )
        return nn.Sequential(truncate(net, self.layer), GlobalAvgPool(), head)

    def _loader(self, X: np.ndarray, y: np.ndarray, shuffle: bool) -> DataLoader[Any]:
        ds = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, self.batch_size, shuffle, generator=g, num_workers=self.num_workers)

    def _trainer(self, root: str) -> L.Trainer:
        return L.Trainer(
            accelerator=self.accelerator,
            devices=1,
            max_epochs=self.epochs,
            precision=self.precision or default_precision(self.accelerator),  # type: ignore[arg-type]
            callbacks=[EarlyStopping(monitor="val_loss", mode="min", patience=self.patience)],
            logger=False,
            enable_checkpointing=False,  # the best weights are kept in memory
            enable_model_summary=False,
            enable_progress_bar=self.progress_bar,
            num_sanity_val_steps=0,
            # bit-identical on CPU; on CUDA warn, not fail, on an op with no deterministic kernel
            deterministic="warn" if uses_cuda(self.accelerator) else True,
            default_root_dir=root,
        )

    def fit(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
    ) -> FineTuneClassifier:
        """Fit on patches X (N, H, W, 3) uint8, labels y (N,); ``groups`` (N,) patient ids."""
        X = _check_patches(X)
        if groups is None:
            raise ValueError(
                "FineTuneClassifier.fit needs groups= (patient ids) for its validation split"
            )
        groups, y = np.asarray(groups), np.asarray(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        fit_idx, val_idx = validation_split(groups, self.validation_fraction, self.seed)
        self.validation_patients_ = np.unique(groups[val_idx])
        self.train_patients_ = np.unique(groups[fit_idx])
        L.seed_everything(self.seed, workers=True, verbose=False)
        module = _FineTuneModule(self.build_network(len(self.classes_)), self)
        y_idx = y_idx.astype(np.int64)
        with _lightning_context(quiet=not self.progress_bar) as root:
            fit_data = self._loader(X[fit_idx], y_idx[fit_idx], shuffle=True)
            self._trainer(root).fit(
                module, fit_data, self._loader(X[val_idx], y_idx[val_idx], False)
            )
        assert module.best_state is not None
        network = module.network.cpu()
        network.load_state_dict(module.best_state)
        self.network_ = network.eval()
        self.validation_loss_curve_ = module.val_curve
        self.best_epoch_ = int(np.argmin(module.val_curve)) + 1
        return self

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Patches (N, H, W, 3) uint8 -> (N, K) probabilities (one softmax), ``classes_`` order."""
        check_is_fitted(self, "network_")
        X = _check_patches(X)
        device = torch.device("cuda" if uses_cuda(self.accelerator) else "cpu")
        net = self.network_.to(device).eval()
        out = []
        for s in range(0, len(X), self.batch_size):
            x = to_input(torch.from_numpy(X[s : s + self.batch_size]).to(device), self.input_size)
            out.append(torch.softmax(net(x).float(), dim=1).cpu().numpy())
        self.network_.cpu()
        return np.concatenate(out) if out else np.empty((0, len(self.classes_)), np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Patches (N, H, W, 3) uint8 -> (N,) class names."""
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


def finetune_factory(arch: str, weights: str, layer: str, **kw: Any) -> FineTuneClassifier:
    """A :class:`FineTuneClassifier` of ``arch`` from ``weights`` truncated after ``layer``."""
    return FineTuneClassifier(arch=arch, weights=weights, layer=layer, **kw)
