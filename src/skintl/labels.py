"""Class names, spelled once.

Every stage refers to classes through these constants so that a typo is an import error,
not a silent new class.
"""

from __future__ import annotations

AK = "AK"
HEALTHY = "healthy"
SK = "SK"

#: The study's three classes, in the order used for probability columns and tables.
DEFAULT_CLASSES: tuple[str, ...] = (AK, HEALTHY, SK)
