"""Pre-training of ResNet backbones on a source set: supervised, SimCLR and MoCo v2.

Blocks: :mod:`.losses` (pure functions), :mod:`.heads`, :mod:`.augment`, :mod:`.data`; one module
per method (:mod:`.supervised`, :mod:`.simclr`, :mod:`.moco`), each a LightningModule composed
of a backbone, a head and a loss and registered in :data:`METHODS`; :func:`.train.pretrain` runs
Lightning's Trainer and writes skintl's encoder file.

``METHODS`` and ``pretrain`` are imported on first use (PEP 562), so that importing a light
submodule (the CLI's argument definitions, say) does not import Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METHODS", "pretrain"]


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        from skintl.pretrain.common import METHODS, register_methods

        register_methods()
        return METHODS
    if name == "pretrain":
        from skintl.pretrain.train import pretrain

        return pretrain
    raise AttributeError(f"module 'skintl.pretrain' has no attribute {name!r}")
