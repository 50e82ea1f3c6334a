"""Collect every problem of a data source, then stop once with all of them.

A user with 2,000 photos must not fix them one run at a time: readers record each bad row or
file in a :class:`Problems` list and keep going; the data stage raises one
:class:`DataProblems` listing them all (up to a limit) with their count.

Duplicates across patients are leakage, so they are problems too: the same decoded pixels under
two patient ids would put one photo (or patch) on both sides of a patient-grouped split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")

#: problems printed in full; the rest are counted
DEFAULT_SHOWN = 50


class DataError(ValueError):
    """Bad input data; the message names the file or row and the fix."""


class DataProblems(DataError):
    """Several problems in the input data, reported together."""

    def __init__(self, messages: list[str], shown: int = DEFAULT_SHOWN) -> None:
        self.messages = messages
        n = len(messages)
        count = f"{n} problem{'s' if n != 1 else ''} in the input data"
        lines = [f"{count}:"] + [f"- {m}" for m in messages[:shown]]
        if n > shown:
            lines.append(f"... and {n - shown} more")
        lines.append(f"{count}: fix {'them' if n != 1 else 'it'} and rerun")
        super().__init__("\n".join(lines))


@dataclass
class Problems:
    """An ordered list of problem messages, each naming a file or row and the fix."""

    messages: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.messages.append(message)

    def attempt(self, fn: Callable[..., T], *args: object) -> T | None:
        """``fn(*args)``, or None with its :class:`DataError` recorded as a problem."""
        try:
            return fn(*args)
        except DataProblems as e:
            self.messages.extend(e.messages)
        except DataError as e:
            self.add(str(e))
        return None

    def raise_if_any(self, shown: int = DEFAULT_SHOWN) -> None:
        if self.messages:
            raise DataProblems(self.messages, shown)

    def __len__(self) -> int:
        return len(self.messages)


def pixel_hash(pixels: np.ndarray) -> str:
    """Hash of decoded pixels and their shape: equal for one image saved twice (any name)."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Item:
    """One photo or patch as a source found it: where, whose, and its pixel hash."""

    path: str
    patient_id: str
    digest: str


def duplicates(items: Iterable[Item], problems: Problems, what: str, within: bool) -> int:
    """Record a problem for every image whose pixels appear under two patient ids (leakage).

    Args:
        items: the photos or patches, each with its pixel hash.
        problems: where the problems go.
        what: "photo" or "patch", for the messages.
        within: whether the same pixels twice under one patient are a problem too.

    Returns:
        How many items repeat an earlier one's pixels under the same patient.
    """
    first: dict[str, Item] = {}
    repeats = 0
    for item in items:
        seen = first.setdefault(item.digest, item)
        if seen is item:
            continue
        if seen.patient_id != item.patient_id:
            problems.add(
                f"{item.path} (patient {item.patient_id}) has the same pixels as {seen.path} "
                f"(patient {seen.patient_id}): one {what} under two patients would leak across "
                "the patient-grouped split; keep it under its true patient only"
            )
            continue
        repeats += 1
        if within:
            problems.add(
                f"{item.path} has the same pixels as {seen.path} (both patient "
                f"{item.patient_id}): the same {what} twice would count twice; drop one"
            )
    return repeats


def inside_root(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refused when it points outside ``root`` (``..``, absolute paths).

    Raises:
        DataError: naming ``where`` (the file or row that holds the path).
    """
    base = root.resolve()
    # lexical: a symlink the user placed inside the root is theirs to follow
    path = Path(os.path.normpath(base / relative))
    if not path.is_relative_to(base):
        raise DataError(
            f"{where}: path {relative!r} points outside the data root {base}; "
            "paths must stay inside data.root (move the image there and use a relative path)"
        )
    return path
