"""The report's ink section: how many photos the ink rule flags, and a mosaic to judge it by.

The mosaic shows the photos with the largest ink fractions and a seeded sample of photos
without ink, each beside a copy with the rule's ink pixels painted over, so a reader can see
what the rule finds and what it misses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from skintl.config import InkConfig
from skintl.data.ink import InkRule, ink_mask
from skintl.data.sources import read_rgb
from skintl.data.validate import DataError
from skintl.report.figures import ink_mosaic

log = logging.getLogger(__name__)

MOSAIC = "ink_mosaic.png"
#: photos in the mosaic: the most inked ones, then a sample of photos without ink
N_INK, N_CLEAN = 8, 4


def pick_photos(manifest: pd.DataFrame, n_ink: int, n_clean: int, seed: int) -> pd.DataFrame:
    """The ``n_ink`` photos with the largest ink fractions, then ``n_clean`` without ink."""
    inked = manifest[manifest["has_ink"]].nlargest(n_ink, "ink_fraction")
    clean = manifest[manifest["ink_fraction"] == 0]
    clean = clean.sample(min(n_clean, len(clean)), random_state=seed)
    return pd.concat([inked, clean])


def ink_rule_of(cfg: dict[str, Any]) -> InkRule:
    """The rule of a raw config's ``data.ink`` settings (defaults for the keys it lacks)."""
    ink = (cfg.get("data") or {}).get("ink") or {}
    return InkRule(**{k: v for k, v in ink.items() if k in InkRule.__dataclass_fields__})


def ink_counts(manifest: pd.DataFrame) -> list[dict[str, Any]]:
    """Photos and photos with ink per image label (diagnosis)."""
    g = manifest.groupby("labels")["has_ink"]
    return [
        {"label": str(k), "photos": int(n), "with_ink": int(i), "share": f"{100 * i / n:.0f}%"}
        for k, n, i in zip(g.size().index, g.size(), g.sum(), strict=True)
    ]


def _mosaic(manifest: pd.DataFrame, rule: InkRule, path: Path, seed: int) -> Path | None:
    """The mosaic of :func:`pick_photos` (photos that cannot be read are left out, logged)."""
    photos, masks, titles = [], [], []
    picked = pick_photos(manifest, N_INK, N_CLEAN, seed)
    for image, label, frac in zip(
        picked["image_path"], picked["labels"], picked["ink_fraction"], strict=True
    ):
        try:
            rgb = read_rgb(Path(image))
        except DataError as e:  # a run directory opened where its photos are not
            log.warning("ink mosaic: %s", e)
            continue
        photos.append(rgb)
        masks.append(ink_mask(rgb, rule))
        titles.append(f"{Path(image).stem} ({label})\nink {100 * frac:.2f}%")
    return ink_mosaic(photos, masks, titles, path) if photos else None


def ink_context(
    run_dir: Path, cfg: dict[str, Any], fig_dir: Path, seed: int
) -> dict[str, Any] | None:
    """Counts per label and the mosaic (written to ``fig_dir``), or None without ink columns."""
    path = run_dir / "manifest.parquet"
    if not path.is_file():
        return None
    manifest = pd.read_parquet(path)
    if "has_ink" not in manifest.columns:
        return None
    ink = (cfg.get("data") or {}).get("ink") or {}
    exclude = (cfg.get("patches") or {}).get("exclude") or {}
    mosaic = _mosaic(manifest, ink_rule_of(cfg), fig_dir / MOSAIC, seed)
    return {
        "counts": ink_counts(manifest),
        "min_fraction": 100
        * float(ink.get("min_fraction", InkConfig.model_fields["min_fraction"].default)),
        "mosaic": mosaic.name if mosaic else None,
        "excluded": bool(exclude.get("ink")),
        "max_ink_fraction": float(exclude.get("max_ink_fraction", 0.0)),
    }
