"""Hand-crafted patch descriptors of the classical baselines, cached like encoder features.

The descriptors are computed per patch with nothing learned from the labels (the YIQ range is
fixed), so computing them once for all folds is equivalent to computing them inside each fold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import TransformerMixin

from skintl.features.lbp import ColourLBPFeatures, LBPYIQFeatures
from skintl.registry import Registry

#: layer name of hand-crafted feature cells in tables and folders
HANDCRAFTED_LAYER = "handcrafted"

HANDCRAFTED: Registry[Callable[[], TransformerMixin]] = Registry("hand-crafted descriptor")
# Spyridonos et al. 2017: uniform LBP histograms of the Y and I channels of YIQ
HANDCRAFTED.register("lbp_yiq")(lambda: LBPYIQFeatures(P=8, R=1, channels=("Y", "I")))
# colour statistics (RGB and Lab) + LBP-YIQ
HANDCRAFTED.register("colour_lbp")(lambda: ColourLBPFeatures(P=8, R=1, channels=("Y", "I")))


def handcrafted_features(name: str, patches: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(N, S, S, 3) uint8 patches -> (N, d) float32 descriptors of ``name``."""
    est = HANDCRAFTED.get(name)()
    est.fit(patches[:chunk])
    parts = [
        est.transform(np.asarray(patches[s : s + chunk])) for s in range(0, len(patches), chunk)
    ]
    return np.concatenate(parts).astype(np.float32)
