"""Lesion outlines drawn on photos: LabelMe, COCO instance segmentation, GeoJSON (QuPath).

Each reader turns a file into :class:`AnnotatedPhoto` records: the image path as written (checked
to stay inside the data root), the size the file states, and the lesions with their labels as
written. Geometry is kept in the libraries that own it: shapely polygons (holes included) for
LabelMe, GeoJSON and COCO polygons, COCO's run-length encoding (pycocotools) for RLE masks.
Coordinates are pixels, x to the right and y down; pixel (r, c) covers [c, c+1) x [r, r+1).

Image paths: LabelMe's ``imagePath`` is relative to its JSON file (LabelMe's convention), COCO's
``file_name`` relative to ``data.root``, and a GeoJSON file outlines the image with the same
name stem in its folder (QuPath exports one file per image).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skintl.data.readers import IMAGE_SUFFIXES
from skintl.data.validate import DataError, Problems, inside_root


@dataclass(frozen=True)
class Lesion:
    """One outline: its label as written, and a shapely geometry or a COCO RLE dict."""

    label: str
    geometry: Any = None  # shapely Polygon / MultiPolygon
    rle: dict | None = None


@dataclass(frozen=True)
class AnnotatedPhoto:
    source_file: Path
    image_path: Path
    lesions: tuple[Lesion, ...]
    size: tuple[int, int] | None = None  # (H, W) as the file states it


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read as JSON ({e}); re-export the annotation") from None


def _polygon(points: Any, where: str, holes: Any = ()) -> Any:
    from shapely.geometry import Polygon

    try:
        poly = Polygon(points, holes)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: not a polygon ({e}); redraw the outline") from None
    if len(poly.exterior.coords) < 4:  # closed ring of 3 distinct points
        raise DataError(f"{where}: an outline needs at least 3 points; redraw it")
    return poly


def read_labelme(path: Path, root: Path, problems: Problems) -> list[AnnotatedPhoto]:
    """A LabelMe JSON file: one photo, ``shapes`` of type polygon or rectangle.

    Bad shapes go to ``problems`` and are skipped; a file that cannot be used raises.
    """
    doc = _load_json(path)
    if not isinstance(doc, dict) or "shapes" not in doc or "imagePath" not in doc:
        raise DataError(f"{path}: not a LabelMe file (needs imagePath and shapes)")
    folder = os.path.relpath(path.parent, root)
    image = inside_root(root, os.path.join(folder, doc["imagePath"]), str(path))
    lesions = []
    for k, shape in enumerate(doc["shapes"]):
        where = f"{path}, shape {k} ({shape.get('label')!r})"
        kind = shape.get("shape_type") or "polygon"
        points = shape.get("points", [])
        if kind == "rectangle" and len(points) == 2:
            (x0, y0), (x1, y1) = points
            points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        elif kind != "polygon":
            problems.add(f"{where}: shape type {kind!r} cannot outline a lesion; draw a polygon")
            continue
        geometry = problems.attempt(_polygon, points, where)
        if geometry is not None:
            lesions.append(Lesion(str(shape.get("label", "")), geometry))
    size = (doc["imageHeight"], doc["imageWidth"]) if "imageHeight" in doc else None
    return [AnnotatedPhoto(path, image, tuple(lesions), size)]


def _coco_lesion(ann: dict, names: dict[int, str], where: str) -> Lesion:
    if ann.get("category_id") not in names:
        raise DataError(f"{where}: category_id {ann.get('category_id')} is not in categories")
    seg = ann.get("segmentation")
    label = names[ann["category_id"]]
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return Lesion(label, rle=seg)
    if isinstance(seg, list) and seg:
        from shapely.geometry import MultiPolygon

        parts = [_polygon(list(zip(p[::2], p[1::2], strict=True)), where) for p in seg]
        return Lesion(label, MultiPolygon(parts) if len(parts) > 1 else parts[0])
    raise DataError(f"{where}: segmentation is neither polygons nor RLE; re-export the file")


def read_coco(path: Path, root: Path, problems: Problems) -> list[AnnotatedPhoto]:
    """A COCO instance-segmentation file: many photos, polygon or RLE segmentations."""
    doc = _load_json(path)
    if not isinstance(doc, dict) or not {"images", "annotations", "categories"} <= set(doc):
        raise DataError(f"{path}: not a COCO file (needs images, annotations, categories)")
    names = {c["id"]: str(c["name"]) for c in doc["categories"]}
    lesions: dict[Any, list[Lesion]] = {im["id"]: [] for im in doc["images"]}
    for k, ann in enumerate(doc["annotations"]):
        where = f"{path}, annotation {ann.get('id', k)}"
        if ann.get("image_id") not in lesions:
            problems.add(f"{where}: image_id {ann.get('image_id')} is not in images")
            continue
        lesion = problems.attempt(_coco_lesion, ann, names, where)
        if lesion is not None:
            lesions[ann["image_id"]].append(lesion)
    photos = []
    for im in doc["images"]:
        where = f"{path}, image {im['id']}"
        image = problems.attempt(inside_root, root, im["file_name"], where)
        if image is not None:
            size = (im["height"], im["width"]) if "height" in im else None
            photos.append(AnnotatedPhoto(path, image, tuple(lesions[im["id"]]), size))
    return photos


def _geojson_label(properties: dict | None) -> str:
    props = properties or {}
    classification = props.get("classification") or {}
    return str(classification.get("name") or props.get("label") or props.get("name") or "")


def read_geojson(path: Path, root: Path, problems: Problems) -> list[AnnotatedPhoto]:
    """A GeoJSON FeatureCollection (QuPath export) of the image with the same name stem."""
    import geojson
    from shapely.geometry import shape

    try:
        doc = geojson.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: cannot read as GeoJSON ({e}); re-export it") from None
    features = doc.get("features") if isinstance(doc, dict) else None
    if features is None:
        raise DataError(f"{path}: not a GeoJSON FeatureCollection; export the annotations as one")
    images = [
        p for p in sorted(path.parent.glob(path.stem + ".*")) if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if len(images) != 1:
        found = [p.name for p in images] or "none"
        raise DataError(
            f"{path}: outlines the image named {path.stem}.png/.jpg/... beside it; found {found} "
            "(there must be exactly one)"
        )
    lesions = []
    for k, feature in enumerate(features):
        label = _geojson_label(feature.get("properties"))
        where = f"{path}, feature {k} ({label!r})"
        geometry = feature.get("geometry") or {}
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            problems.add(f"{where}: geometry {geometry.get('type')!r} cannot outline a lesion")
            continue
        try:
            lesions.append(Lesion(label, shape(geometry)))
        except (ValueError, TypeError, AttributeError) as e:
            problems.add(f"{where}: not a polygon ({e}); redraw the outline")
    return [AnnotatedPhoto(path, images[0], tuple(lesions))]


READERS = {"labelme": read_labelme, "coco": read_coco, "geojson": read_geojson}
DEFAULT_PATTERNS = {"labelme": "**/*.json", "geojson": "**/*.geojson"}
