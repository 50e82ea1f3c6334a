"""Shared fixtures: tiny seeded synthetic photos and a tiny study config."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_PAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pad-ufes-20-masked"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow tests")


def pytest_configure(config: pytest.Config) -> None:
    # `-m slow` adds the slow tests to the default run instead of running them alone
    if config.option.markexpr.strip() == "slow":
        config.option.markexpr = ""
        config.option.slow = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests run only with ``-m slow``, ``--slow`` or a ``-m`` expression naming them."""
    if config.option.slow or "slow" in config.option.markexpr:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 patients x 1 photo of 128 px in the masked-folder format (multi-class masks)."""
    from skintl.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(root, n_patients=4, images_per_patient=1, size=128, seed=1)
    return root
