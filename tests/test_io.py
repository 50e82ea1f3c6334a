"""Atomic writes: complete or absent, and with the mode the umask gives a plain file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skintl.io import atomic_path, current_umask, write_json, write_npy, write_parquet, write_text


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
def test_outputs_are_0644_under_umask_022(tmp_path: Path) -> None:
    write_text("x", tmp_path / "a.txt")
    write_json({"a": 1}, tmp_path / "a.json")
    write_npy(np.zeros(3), tmp_path / "a.npy")
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "a.parquet")
    for name in ("a.txt", "a.json", "a.npy", "a.parquet"):
        assert _mode(tmp_path / name) == 0o644, name
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(plain) == _mode(tmp_path / "a.txt")  # as a file written without skintl


@pytest.mark.parametrize("mask", [0o002, 0o027, 0o077])
def test_outputs_follow_other_umasks(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o666 & ~mask


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
