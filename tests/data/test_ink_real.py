"""The ink rule on PAD-UFES-20 photos whose lesion is circled with a pen (skips without them)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_PAD
from skintl.config import InkConfig
from skintl.data.ink import ink_mask
from skintl.data.sources import read_rgb

#: ACK photos with a violet pen circle (checked by eye)
INKED = ["PAT_1014_86_861", "PAT_1067_284_533", "PAT_1443_1536_166", "PAT_1381_1314_517"]


@pytest.mark.skipif(
    not (SHARED_PAD / "images").is_dir(), reason=f"PAD-UFES-20 photos not found at {SHARED_PAD}"
)
@pytest.mark.parametrize("photo", INKED)
def test_pen_circles_on_real_photos_are_flagged(photo: str) -> None:
    fraction = float(np.mean(ink_mask(read_rgb(SHARED_PAD / "images" / f"{photo}.jpg"))))
    assert fraction > InkConfig().min_fraction
