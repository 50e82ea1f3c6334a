"""Progress of long loops: a tqdm bar on a terminal, plain periodic log lines elsewhere.

Logs, CI and ``nohup`` capture stderr into files, where a bar's carriage returns and escape codes
turn into one unreadable line; there a line like ``patches: 120/273 photos (14.2 photo/s)`` is
logged every ``every_s`` seconds and once at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def progress(
    items: Iterable[T], desc: str, unit: str, total: int | None = None, every_s: float = 10.0
) -> Iterator[T]:
    """Yield ``items`` while reporting progress in units of ``unit`` (singular, e.g. "photo")."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total)
        return
    start = last = time.monotonic()
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            _report(desc, unit, i, total, now - start)
            last = now
    _report(desc, unit, i, total, time.monotonic() - start)


def _report(desc: str, unit: str, done: int, total: int | None, seconds: float) -> None:
    of = f"/{total}" if total is not None else ""
    plural = unit if done == 1 else unit + ("es" if unit.endswith(("ch", "sh", "s")) else "s")
    rate = done / seconds if seconds > 0 else float("inf")
    log.info("%s: %d%s %s (%.1f %s/s)", desc, done, of, plural, rate, unit)
