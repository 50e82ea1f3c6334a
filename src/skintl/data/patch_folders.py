"""Already-cut patches in folders, the original study's leave-one-patient-out layout included.

Layouts, under ``data.root``:

- ``<patient>/<class>/*.png``, optionally ``TRAIN|TEST/<patient>/<class>/*.png`` (a fixed split
  above the patients, kept as the ``split`` column);
- ``<case>/TRAIN|TEST/<class>/*.png``, the original study's layout: ``caseNN/TEST`` holds
  patient NN's patches and ``caseNN/TRAIN`` holds copies of every other patient's patches. A
  patch belongs to the case whose TEST folder holds it; TRAIN copies are matched to their TEST
  original by decoded pixels (not file names) and dropped, so each patch is read once.

Class folders map to classes through ``data.class_aliases`` (numeric folders such as ``0``
included). The same pixels under two patients are an error in every layout: that is leakage.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from skintl.config import DataConfig
from skintl.data.readers import IMAGE_SUFFIXES, read_rgb
from skintl.data.validate import DataError, Item, Problems, duplicates, pixel_hash
from skintl.progress import progress

log = logging.getLogger(__name__)

SPLIT_FOLDERS = {"train", "test", "val", "valid", "validation"}
TEST = "test"


@dataclass(frozen=True)
class Patch:
    """One patch file: its patient (or case), class, split folder ('' if none) and pixel hash."""

    path: Path
    patient_id: str
    cls: str
    split: str
    digest: str
    case_layout: bool  # <case>/<split>/<class>/<file>


def class_lookup(data: DataConfig, classes: list[str]) -> dict[str, str]:
    """Folder or label name (lower case) -> class, through ``data.class_aliases``."""
    aliases = {k.lower(): v for k, v in data.class_aliases.items()}
    aliases.update({c.lower(): c for c in classes})
    return aliases


def _read_patch(path: Path, data: DataConfig, lookup: dict[str, str], classes: list[str]) -> Patch:
    assert data.root is not None
    parts = list(path.relative_to(data.root).parts[:-1])
    is_split = [p.lower() in SPLIT_FOLDERS for p in parts]
    if len(parts) == 2 and not any(is_split):
        patient, split, folder = parts[0], "", parts[1]
    elif len(parts) == 3 and is_split == [False, True, False]:
        patient, split, folder = parts[0], parts[1], parts[2]
    elif len(parts) == 3 and is_split == [True, False, False]:
        split, patient, folder = parts
    else:
        raise DataError(
            f"{path}: expected <patient>/<class>/<file>, <case>/TRAIN|TEST/<class>/<file> or "
            f"TRAIN|TEST/<patient>/<class>/<file> under {data.root}, found folders {parts}"
        )
    if folder.lower() not in lookup:
        raise DataError(
            f"{path}: class folder {folder!r} is neither a class {classes} nor in "
            f"data.class_aliases {data.class_aliases}; add an alias (e.g. {folder}: AK)"
        )
    digest = pixel_hash(read_rgb(path, data.max_image_pixels))
    return Patch(
        path, patient, lookup[folder.lower()], split, digest, len(parts) == 3 and is_split[1]
    )


def _originals(patches: list[Patch], problems: Problems) -> list[Patch]:
    """The case layout: TEST patches are the originals; TRAIN copies are checked and dropped."""
    originals = [p for p in patches if p.split.lower() == TEST]
    by_digest = {p.digest: p for p in originals}
    copies = [p for p in patches if p.split.lower() != TEST]
    own = matched = 0
    for copy in copies:
        original = by_digest.get(copy.digest)
        if original is None:
            problems.add(
                f"{copy.path}: a {copy.split} patch with no TEST original (no case's TEST folder "
                "holds these pixels), so its patient is unknown; put the original in its "
                "patient's TEST folder or delete the copy"
            )
        elif original.cls != copy.cls:
            problems.add(
                f"{copy.path} is class {copy.cls} but its TEST original {original.path} is class "
                f"{original.cls}; the copies of one patch must agree on its class"
            )
        matched += original is not None
        own += original is not None and original.patient_id == copy.patient_id
    if own:
        log.warning(
            "%d TRAIN copies sit in their own patient's case folder (the original split leaked "
            "them); skintl keeps one copy per patch under its TEST patient",
            own,
        )
    counts = Counter(p.cls for p in originals)
    log.info(
        "patch folders (<case>/TRAIN|TEST/<class>): %d patients, unique patches per class %s, "
        "%d duplicate copies dropped",
        len({p.patient_id for p in originals}),
        dict(sorted(counts.items())),
        matched,
    )
    return originals


def patch_folders_manifest(data: DataConfig, classes: list[str]) -> pd.DataFrame:
    """Manifest of already-cut patches, one row per unique patch (see the module docstring).

    Raises:
        DataProblems: every bad file at once: unknown layouts and classes, undecodable files,
            TRAIN copies without a TEST original or of another class, one patch under two
            patients.
    """
    assert data.root is not None
    lookup = class_lookup(data, classes)
    problems = Problems()
    files = [p for p in sorted(data.root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    read = [
        problems.attempt(_read_patch, f, data, lookup, classes)
        for f in progress(files, "data", "patch")
        if f.is_file()
    ]
    patches = [p for p in read if p is not None]
    if not files:
        raise DataError(f"{data.root}: no image files found (expected <patient>/<class>/*.png)")
    layouts = {p.case_layout for p in patches}
    if len(layouts) > 1:
        mixed = [next(p.path for p in patches if p.case_layout == x) for x in (True, False)]
        problems.add(
            f"{data.root}: mixed layouts, e.g. {mixed[0]} (case/TRAIN|TEST/class) and "
            f"{mixed[1]}; use one layout for every patient"
        )
    elif layouts == {True}:
        patches = _originals(patches, problems)
    items = [Item(str(p.path), p.patient_id, p.digest) for p in patches]
    repeats = duplicates(items, problems, "patch", within=False)
    if repeats:
        log.warning("%d patches repeat another patch of the same patient (kept)", repeats)
    problems.raise_if_any(data.max_problems)
    return pd.DataFrame(
        {
            "image_path": [str(p.path) for p in patches],
            "annotation": [p.cls for p in patches],
            "patient_id": [p.patient_id for p in patches],
            "labels": [p.cls for p in patches],
            "source": "patch_folders",
            "split": [p.split.upper() for p in patches],
        }
    )
