"""``data.extra_metadata``: your own photo-level columns, joined to the manifest by image path.

The CSV's key column is ``data.image_column`` (default ``image``): each photo's path relative to
the data root (an absolute path works too), as in the metadata CSV. Its other columns are added
to the manifest as they are (text; an empty cell is a missing value).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from skintl.data.validate import DataError

#: rows named in full when photos have no row in the CSV
SHOWN = 5


def read_extra_metadata(path: Path, key: str) -> pd.DataFrame:
    """The CSV as text columns, checked for its key column and duplicate keys."""
    if not path.is_file():
        raise DataError(f"{path}: data.extra_metadata CSV not found (fix the path)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if key not in df.columns:
        raise DataError(
            f"{path}: no key column {key!r} (the photo's path relative to data.root, the same "
            f"column name as data.image_column); it has {list(df.columns)}"
        )
    dup = df[key][df[key].duplicated(keep=False)]
    if len(dup):
        shown = sorted(set(dup))[:SHOWN]
        raise DataError(
            f"{path}: {dup.nunique()} image paths have several rows, e.g. {shown}; keep one row "
            "per photo"
        )
    return df


def join_extra_metadata(manifest: pd.DataFrame, path: Path, key: str, root: Path) -> pd.DataFrame:
    """The manifest with the CSV's columns added, matched on ``image_path``.

    Args:
        manifest: one row per photo with ``image_path`` (absolute, normalised).
        path: the CSV; ``key`` holds image paths relative to ``root`` (or absolute).
        root: the data root the manifest's image paths were resolved against.

    Raises:
        DataError: naming the file: no key column, duplicate keys, columns the manifest already
            has, photos without a row (how many, and the first few).
    """
    extra = read_extra_metadata(path, key)
    clash = sorted((set(extra.columns) - {key}) & set(manifest.columns))
    if clash:
        raise DataError(
            f"{path}: columns {clash} are already manifest columns; rename them in the CSV"
        )
    base = root.resolve()
    extra.index = pd.Index([os.path.normpath(base / k) for k in extra[key]])
    missing = manifest["image_path"][~manifest["image_path"].isin(extra.index)]
    if len(missing):
        shown = [os.path.relpath(p, base) for p in missing.iloc[:SHOWN]]
        raise DataError(
            f"{path}: {len(missing)} of {len(manifest)} photos have no row (key column {key!r}, "
            f"paths relative to {base}), e.g. {shown}; add a row for each"
        )
    columns = extra.drop(columns=[key]).loc[manifest["image_path"]]
    return pd.concat([manifest, columns.set_axis(manifest.index)], axis=1)
