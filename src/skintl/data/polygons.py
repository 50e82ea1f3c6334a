"""Polygon sources -> validated manifest + one rasterised label mask per photo.

The data stage reads every annotation file (:mod:`skintl.data.annotations`), maps labels to
classes, finds each photo's patient (a regex on the file name, or the metadata CSV), decodes the
photo, rasterises its outlines into a mask (pixel value = class index + 1, 0 = unannotated) and
writes it to ``<run>/masks/``; the patches stage then reads these masks like any multi-class
mask. Every problem of every file is collected and reported at once.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from skintl.config import DataConfig
from skintl.data.annotations import DEFAULT_PATTERNS, READERS, AnnotatedPhoto, Lesion
from skintl.data.patch_folders import class_lookup
from skintl.data.readers import MANIFEST_COLUMNS, read_rgb
from skintl.data.validate import DataError, Item, Problems, duplicates, pixel_hash
from skintl.io import atomic_path
from skintl.progress import progress

log = logging.getLogger(__name__)

#: outlines of different classes may share boundary pixels; more overlap than this fraction of
#: the smaller outline is an annotation error
MAX_OVERLAP = 0.01


def lesion_mask(lesion: Lesion, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise one outline: (H, W) bool, True where a pixel's centre lies inside (holes out)."""
    if lesion.rle is not None:
        from pycocotools import mask as coco_mask

        rle = lesion.rle
        if isinstance(rle["counts"], list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(rle, *rle["size"])
        with warnings.catch_warnings():  # pycocotools' own numpy-2 copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.asarray(coco_mask.decode(rle), dtype=bool)
    from skimage.draw import polygon2mask

    out = np.zeros(shape, dtype=bool)
    for poly in getattr(lesion.geometry, "geoms", [lesion.geometry]):
        # (x, y) vertices -> (row, col); -0.5 so that a pixel counts when its centre is inside
        ring = np.asarray(poly.exterior.coords)[:, ::-1] - 0.5
        part = polygon2mask(shape, ring)
        for hole in poly.interiors:
            part &= ~polygon2mask(shape, np.asarray(hole.coords)[:, ::-1] - 0.5)
        out |= part
    return out


def _on_photo(lesion: Lesion, shape: tuple[int, int]) -> bool:
    """Whether the outline's bounding box meets the photo (an RLE always does)."""
    if lesion.geometry is None:
        return True
    x0, y0, x1, y1 = lesion.geometry.bounds
    return x1 > 0 and y1 > 0 and x0 < shape[1] and y0 < shape[0]


def rasterise(
    photo: AnnotatedPhoto,
    shape: tuple[int, int],
    classes: dict[str, int],
    where: str,
    skipped: list[str] | None = None,
) -> np.ndarray:
    """The photo's label mask: (H, W) uint8, class index + 1 inside outlines, 0 elsewhere.

    Args:
        photo: the outlines of one photo.
        shape: (H, W) of the decoded photo.
        classes: label as written -> class index (labels to skip are absent).
        where: the annotation file, for messages.
        skipped: receives a message for each degenerate outline left out: one on the photo that
            holds no pixel centre (a sub-pixel sliver), which labels nothing either way.

    Raises:
        DataProblems: outlines that are invalid, outside the photo, or overlap another class.
    """
    problems = Problems()
    out = np.zeros(shape, dtype=np.uint8)
    for lesion in photo.lesions:
        if lesion.label not in classes:
            continue
        if lesion.geometry is not None and not lesion.geometry.is_valid:
            from shapely.validation import explain_validity

            problems.add(
                f"{where}: outline {lesion.label!r} is not a valid polygon "
                f"({explain_validity(lesion.geometry)}); redraw it without self-crossings"
            )
            continue
        region = lesion_mask(lesion, shape)
        if region.shape != shape:
            problems.add(f"{where}: RLE of {lesion.label!r} is {region.shape}, photo is {shape}")
            continue
        if not region.any() and _on_photo(lesion, shape):
            if skipped is not None:
                skipped.append(f"{where}: outline {lesion.label!r} on {photo.image_path.name} "
                               "holds no pixel centre (a sub-pixel outline); skipped")  # fmt: skip
            continue
        if not region.any():
            problems.add(
                f"{where}: outline {lesion.label!r} covers no pixel of the {shape[1]}x"
                f"{shape[0]} photo; check its coordinates"
            )
            continue
        value = classes[lesion.label] + 1
        clash = region & (out > 0) & (out != value)
        if clash.sum() > MAX_OVERLAP * region.sum():
            problems.add(
                f"{where}: outline {lesion.label!r} overlaps an outline of another class by "
                f"{int(clash.sum())} pixels; a pixel has one class, fix the outlines"
            )
        out[region] = value
    problems.raise_if_any()
    return out


def _patient_finder(data: DataConfig) -> Callable[[Path], str]:
    assert data.root is not None
    root = data.root
    if data.patient_regex:
        pattern = re.compile(data.patient_regex)

        def by_name(image: Path) -> str:
            m = pattern.search(image.name)
            if m is None:
                raise DataError(
                    f"{image}: data.patient_regex {data.patient_regex!r} does not match the file "
                    "name; fix the regex or rename the file"
                )
            if "patient" in pattern.groupindex:
                return m.group("patient")
            return m.group(1) if pattern.groups else m.group(0)

        return by_name
    meta = root / data.metadata
    if not meta.is_file():
        raise DataError(
            f"{meta}: no metadata CSV to find patient ids; add it (columns "
            f"{data.image_column}, {data.patient_column}) or set data.patient_regex"
        )
    df = pd.read_csv(meta, dtype=str, keep_default_na=False)
    missing = [c for c in (data.image_column, data.patient_column) if c not in df.columns]
    if missing:
        raise DataError(f"{meta}: missing columns {missing}; it has {list(df.columns)}")
    table = {
        (root / p).resolve(): pid.strip()
        for p, pid in zip(df[data.image_column], df[data.patient_column], strict=True)
    }

    def by_table(image: Path) -> str:
        pid = table.get(image.resolve(), "")
        if not pid:
            raise DataError(f"{image}: no patient id for this image in {meta}; add a row")
        return pid

    return by_table


def _annotation_files(data: DataConfig) -> list[Path]:
    assert data.root is not None
    pattern = data.annotations or DEFAULT_PATTERNS.get(data.source, "")
    files = sorted(p for p in data.root.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"{data.root}: no annotation files match {pattern!r} (data.annotations)")
    return files


def _label_classes(
    photos: list[AnnotatedPhoto], data: DataConfig, classes: list[str], problems: Problems
) -> dict[str, int]:
    lookup = class_lookup(data, classes)
    ignore = {s.lower() for s in data.ignore_labels}
    out = {}
    for photo in photos:
        for lesion in photo.lesions:
            name = lesion.label.lower()
            if name in lookup:
                out[lesion.label] = classes.index(lookup[name])
            elif name not in ignore and lesion.label not in out:
                out[lesion.label] = -1
                problems.add(
                    f"{photo.source_file}: label {lesion.label!r} is neither a class {classes} "
                    f"nor in data.class_aliases; map it there or list it in data.ignore_labels"
                )
    return {k: v for k, v in out.items() if v >= 0}


def polygon_manifest(data: DataConfig, classes: list[str], mask_dir: Path) -> pd.DataFrame:
    """Read a LabelMe / COCO / GeoJSON source; write masks to ``mask_dir``; return the manifest.

    Raises:
        DataProblems: every bad file, outline, label, patient id and duplicate at once.
    """
    assert data.root is not None
    problems = Problems()
    photos: list[AnnotatedPhoto] = []
    for f in _annotation_files(data):
        photos += problems.attempt(READERS[data.source], f, data.root, problems) or []
    label_index = _label_classes(photos, data, classes, problems)
    patient_of = _patient_finder(data)
    rows, items = [], []
    skipped: list[str] = []
    seen: dict[Path, Path] = {}
    for photo in progress(photos, "data", "photo"):
        if photo.image_path in seen:
            problems.add(
                f"{photo.source_file}: annotates {photo.image_path} again (so does "
                f"{seen[photo.image_path]}); keep one annotation per photo"
            )
            continue
        seen[photo.image_path] = photo.source_file
        row = problems.attempt(_photo, photo, data, label_index, patient_of, mask_dir, skipped)
        if row is not None:
            rows.append(row)
            items.append(Item(str(photo.image_path), row["patient_id"], row.pop("digest")))
    duplicates(items, problems, "photo", within=True)
    if skipped:
        log.warning("%d degenerate outline(s) skipped, the rest imported:\n  %s", len(skipped),
                    "\n  ".join(skipped))  # fmt: skip
    problems.raise_if_any(data.max_problems)
    out = pd.DataFrame(rows)
    log.info(
        "%s: %d photos of %d patients, %d outlines",
        data.source,
        len(out),
        out["patient_id"].nunique(),
        sum(len(p.lesions) for p in photos),
    )
    return out[MANIFEST_COLUMNS + [c for c in out.columns if c not in MANIFEST_COLUMNS]]


def _photo(
    photo: AnnotatedPhoto,
    data: DataConfig,
    label_index: dict[str, int],
    patient_of: Callable[[Path], str],
    mask_dir: Path,
    skipped: list[str] | None = None,
) -> dict:
    problems = Problems()
    patient = problems.attempt(patient_of, photo.image_path)
    image = problems.attempt(read_rgb, photo.image_path, data.max_image_pixels)
    if image is not None and photo.size is not None and tuple(photo.size) != image.shape[:2]:
        problems.add(
            f"{photo.source_file}: says {photo.image_path.name} is {photo.size[1]}x"
            f"{photo.size[0]} but it is {image.shape[1]}x{image.shape[0]}; re-export the outlines"
        )
    mask = None
    if image is not None:
        mask = problems.attempt(
            rasterise, photo, image.shape[:2], label_index, photo.source_file, skipped
        )
    problems.raise_if_any()
    assert image is not None and mask is not None
    rel = photo.image_path.relative_to(data.root.resolve() if data.root else Path("/"))
    # the content hash in the name: new outlines make a new path, so the patches stage's
    # fingerprint (which lists the manifest's mask paths) sees the change
    name = "__".join(rel.with_suffix("").parts) + f"-{pixel_hash(mask)[:12]}.png"
    mask_path = mask_dir / name
    with atomic_path(mask_path) as tmp:
        Image.fromarray(mask).save(tmp, format="PNG")
    names = sorted({lesion.label for lesion in photo.lesions if lesion.label in label_index})
    return {
        "image_path": str(photo.image_path),
        "annotation": str(mask_path),
        "patient_id": patient,
        "labels": ",".join(names),
        "source": data.source,
        "annotation_file": str(photo.source_file),
        "digest": pixel_hash(image),
    }
