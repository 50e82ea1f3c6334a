"""Shared fixtures: tiny seeded synthetic photos and a tiny study config."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_PAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pad-ufes-20-masked"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 patients x 1 photo of 128 px in the masked-folder format (multi-class masks)."""
    from skintl.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(root, n_patients=4, images_per_patient=1, size=128, seed=1)
    return root
