"""Pre-training throughput (images/s) of each method on this machine.

Two numbers per method, both after warm-up steps:

- ``step``: the method's training_step + backward + SGD step on ready-made view tensors
  (model cost only);
- ``trainer``: :func:`skintl.pretrain.train.pretrain` end to end (augmentations in the main
  process, Lightning's loop, logging), timed by a callback between batches.

"images" are source images; contrastive methods push two views of each through the backbone.

    .venv/bin/python benchmarks/bench_pretrain.py [--arch resnet18] [--size 64] [--batch 32]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch

from skintl.pretrain import METHODS, pretrain
from skintl.pretrain.augment import AugmentConfig, view_transform

EXTRA: dict[str, dict[str, Any]] = {"moco": {"queue_size": 128}}  # K below the images used


class Timer(L.Callback):
    """Wall time between the end of batch ``warmup - 1`` and the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seen, self.start, self.end = warmup, 0, 0.0, 0.0

    def on_train_batch_end(self, *args: Any) -> None:
        self.seen += 1
        if self.seen == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def step_throughput(method: str, args: argparse.Namespace, images: np.ndarray) -> float:
    torch.manual_seed(0)
    model = METHODS.get(method)(args.arch, num_classes=3, **EXTRA.get(method, {}))
    t = view_transform(AugmentConfig(size=args.size))
    views = [torch.stack([t(img) for img in images[: args.batch]]) for _ in range(2)]
    batch = {"views": views, "label": torch.arange(args.batch) % 3}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            start = time.perf_counter()
        opt.zero_grad()
        model.training_step(batch, i).backward()
        opt.step()
    return args.batch * args.steps / (time.perf_counter() - start)


def trainer_throughput(method: str, args: argparse.Namespace, images: np.ndarray) -> float:
    timer = Timer(args.warmup)
    labels = np.arange(len(images)) % 3
    with tempfile.TemporaryDirectory() as out:
        pretrain(
            images, labels, None, method=method, arch=args.arch, out_dir=out, max_epochs=1,
            batch_size=args.batch, accelerator="cpu", devices=1, num_workers=0,
            progress_bar=False, augment=AugmentConfig(size=args.size), callbacks=[timer],
            **EXTRA.get(method, {}),
        )  # fmt: skip
    return args.batch * (timer.seen - args.warmup) / (timer.end - timer.start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64, help="crop side")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--methods", nargs="+", default=METHODS.names())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    n = args.batch * (args.warmup + args.steps)
    images = rng.integers(0, 256, size=(n, args.size + 8, args.size + 8, 3), dtype=np.uint8)

    print(
        f"{args.arch}, {args.size}x{args.size} crops, batch {args.batch}, {args.threads} torch "
        f"threads, {args.steps} timed steps after {args.warmup} warm-up"
    )
    print(f"{'method':<12}{'step img/s':>12}{'trainer img/s':>15}")
    for method in args.methods:
        step = step_throughput(method, args, images)
        full = trainer_throughput(method, args, images)
        print(f"{method:<12}{step:>12.1f}{full:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
