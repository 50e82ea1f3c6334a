"""Arguments of ``skintl pretrain`` and the call they make; the CLI owner wires in data loading.

Usage from ``skintl.cli``::

    p = sub.add_parser("pretrain", help="pre-train a backbone (supervised, SimCLR, MoCo v2)")
    add_arguments(p)
    ...
    run_from_args(args, images, labels, groups)
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any, get_args

import numpy as np

from skintl.config import PretrainRunConfig
from skintl.encoders.backbones import BACKBONES
from skintl.pretrain.augment import AugmentConfig

#: the methods a config or ``--method`` may name (the config's Literal; tests check it against
#: the ``METHODS`` registry, which imports Lightning)
METHOD_NAMES: tuple[str, ...] = get_args(PretrainRunConfig.model_fields["method"].annotation)

#: method hyper-parameters exposed as options; passed on only when given
METHOD_OPTIONS: dict[str, tuple[type, str]] = {
    "temperature": (float, "softmax temperature (SimCLR 0.1, MoCo v2 0.2)"),
    "queue_size": (int, "MoCo queue size K (default 4096; keep below the number of images)"),
    "key_momentum": (float, "MoCo key-encoder momentum m (default 0.999)"),
    "proj_dim": (int, "projection width (default 128)"),
    "weight_decay": (float, "SGD weight decay (method default)"),
    "label_smoothing": (float, "supervised cross-entropy label smoothing (default 0)"),
}


def _devices(text: str) -> int | str | list[int]:
    if text == "auto":
        return text
    if "," in text:
        return [int(t) for t in text.split(",") if t]
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``skintl pretrain`` to ``p`` (data options are the caller's)."""
    p.add_argument("--method", required=True, choices=METHOD_NAMES)
    p.add_argument(
        "--arch",
        default="resnet18",
        help=f"{', '.join(BACKBONES.names())} or a timm name (tf_efficientnet_lite0)",
    )
    p.add_argument(
        "--init",
        default="random",
        help="starting weights: random, imagenet or a skintl encoder file",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="run folder for this encoder")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256, help="per process")
    p.add_argument("--lr", type=float, help="default: method base lr x global batch / 256")
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    p.add_argument("--devices", type=_devices, default="auto", help="auto, N, or ids '0,1'")
    p.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, ...")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--precision", help="e.g. 32-true, 16-mixed, bf16-mixed (default by device)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="fail instead of resuming when out-dir has a checkpoint")  # fmt: skip
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument(
        "--color-strength", type=float, default=0.25,
        help="colour jitter strength as a fraction of SimCLR's (default 0.25)",
    )  # fmt: skip
    p.add_argument("--no-progress-bar", dest="progress_bar", action="store_false")
    for name, (typ, text) in METHOD_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, help=text)


def method_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The method options the user gave; an error when ``--method`` does not take one."""
    from skintl.pretrain import METHODS

    accepted = inspect.signature(METHODS.get(args.method)).parameters
    given = {k: getattr(args, k) for k in METHOD_OPTIONS if getattr(args, k, None) is not None}
    wrong = sorted(k for k in given if k not in accepted)
    if wrong:
        opts = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ValueError(f"--method {args.method} does not take {opts}")
    return given


def run_from_args(
    args: argparse.Namespace,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    record: dict[str, Any] | None = None,
) -> Path:
    """Run :func:`skintl.pretrain.train.pretrain` with parsed options; return the encoder path.

    ``record`` is extra provenance for the encoder file (the source set's patients)."""
    from skintl.pretrain.train import pretrain

    augment = AugmentConfig(size=args.crop_size, color_strength=args.color_strength)
    return pretrain(
        images, labels, groups, method=args.method, arch=args.arch, out_dir=args.out_dir,
        max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
        num_nodes=args.num_nodes, precision=args.precision, seed=args.seed, resume=args.resume,
        augment=augment, num_workers=args.num_workers, progress_bar=args.progress_bar,
        init=args.init, record=record, **method_kwargs(args),
    )  # fmt: skip
