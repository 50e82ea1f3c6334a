"""Pre-training of ResNet backbones on a source set: supervised, SimCLR and MoCo v2.

Blocks: :mod:`.losses` (pure functions), :mod:`.heads`, :mod:`.augment`, :mod:`.data`; one module
per method (:mod:`.supervised`, :mod:`.simclr`, :mod:`.moco`), each a LightningModule composed
of a backbone, a head and a loss and registered in :data:`METHODS`; :func:`.train.pretrain` runs
Lightning's Trainer and writes skintl's encoder file.
"""

from skintl.pretrain import moco, simclr, supervised  # noqa: F401  (register the methods)
from skintl.pretrain.common import METHODS
from skintl.pretrain.train import pretrain

__all__ = ["METHODS", "pretrain"]
