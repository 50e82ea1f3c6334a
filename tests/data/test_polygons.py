"""Polygon sources (LabelMe, COCO polygon + RLE, GeoJSON): rasterised masks match a hand-made one.

One 40 x 48 photo with two lesions of different classes: an AK square and an SK square with a
square hole; a "ruler" outline is ignored. COCO files are written with pycocotools' RLE encoder
and read back by pycocotools' own COCO loader; GeoJSON with the ``geojson`` package. LabelMe's
writer needs a Qt GUI stack, so its JSON is written in LabelMe's documented file format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skintl.cli import main
from skintl.config import parse_config
from skintl.data.polygons import polygon_manifest
from skintl.data.validate import DataError
from studyhelpers import tiny_config, write_config

H, W = 40, 48
AK_BOX = (5, 5, 15, 15)  # x0, y0, x1, y1 in pixel-edge coordinates
SK_BOX, SK_HOLE = (20, 20, 36, 36), (26, 26, 30, 30)
ALIASES = {"actinic": "AK", "seborrheic": "SK"}


def expected_mask() -> np.ndarray:
    """By hand: class index + 1 (AK 1, SK 3 for classes [AK, healthy, SK]), 0 elsewhere."""
    m = np.zeros((H, W), np.uint8)
    m[5:15, 5:15] = 1
    m[20:36, 20:36] = 3
    m[26:30, 26:30] = 0
    return m


def ring(box: tuple[int, int, int, int]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def write_photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_labelme(path: Path, image_path: str, height: int = H) -> None:
    shapes = [
        {"label": "actinic", "points": ring(AK_BOX), "shape_type": "polygon"},
        # LabelMe has no holes: the SK lesion is drawn as a rectangle, its hole is not expressible
        {"label": "seborrheic", "points": [[20, 20], [36, 36]], "shape_type": "rectangle"},
        {"label": "ruler", "points": [[0, 38], [47, 38], [47, 39]], "shape_type": "polygon"},
    ]
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path}
    doc |= {"imageData": None, "imageHeight": height, "imageWidth": W}
    path.write_text(json.dumps(doc))


def write_coco(path: Path, file_names: list[str]) -> None:
    from pycocotools import mask as coco_mask

    sk = np.asfortranarray((expected_mask() == 3).astype(np.uint8))
    rle = coco_mask.encode(sk)
    rle["counts"] = rle["counts"].decode()
    images, annotations = [], []
    for i, name in enumerate(file_names, 1):
        images.append({"id": i, "file_name": name, "height": H, "width": W})
        x0, y0, x1, y1 = AK_BOX
        poly = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        annotations.append(
            {
                "id": 2 * i,
                "image_id": i,
                "category_id": 1,
                "segmentation": poly,
                "iscrowd": 0,
                "area": 100.0,
                "bbox": [5, 5, 10, 10],
            }
        )
        annotations.append(
            {
                "id": 2 * i + 1,
                "image_id": i,
                "category_id": 2,
                "segmentation": rle,
                "iscrowd": 1,
                "area": float(sk.sum()),
                "bbox": [20, 20, 16, 16],
            }
        )
    categories = [{"id": 1, "name": "actinic"}, {"id": 2, "name": "seborrheic"}]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(doc))


def write_geojson(path: Path) -> None:
    import geojson

    def feature(geometry: geojson.Polygon, name: str) -> geojson.Feature:
        return geojson.Feature(geometry=geometry, properties={"classification": {"name": name}})

    close = lambda box: [*ring(box), ring(box)[0]]  # noqa: E731
    collection = geojson.FeatureCollection(
        [
            feature(geojson.Polygon([close(AK_BOX)]), "actinic"),
            feature(geojson.Polygon([close(SK_BOX), close(SK_HOLE)]), "seborrheic"),
            feature(geojson.Polygon([close((0, 38, 47, 40))]), "ruler"),
        ]
    )
    assert collection.is_valid
    path.write_text(geojson.dumps(collection))


def _config(root: Path, source: str, **data: object) -> dict:
    settings = {"source": source, "class_aliases": ALIASES, "ignore_labels": ["ruler"], **data}
    return tiny_config(root, data=settings)


def _manifest(root: Path, source: str, tmp_path: Path, **data: object) -> pd.DataFrame:
    cfg = parse_config(_config(root, source, **data))
    return polygon_manifest(cfg.data, cfg.classes, tmp_path / "masks")


def _mask(row: pd.Series) -> np.ndarray:
    return np.asarray(Image.open(row["annotation"]))


def test_labelme_rasterised_mask_and_patient_from_file_name(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_photo(root / "photos" / "PAT12_1.png", 0)
    write_labelme(root / "photos" / "PAT12_1.json", "PAT12_1.png")
    m = _manifest(root, "labelme", tmp_path, patient_regex=r"^(?P<patient>PAT\d+)_")
    assert m["patient_id"].tolist() == ["PAT12"]
    expected = expected_mask()
    expected[26:30, 26:30] = 3  # LabelMe's rectangle has no hole
    np.testing.assert_array_equal(_mask(m.iloc[0]), expected)


def test_coco_polygon_and_rle_with_hole_patients_from_metadata(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    root = tmp_path / "data"
    names = ["images/a.png", "images/b.png"]
    for i, name in enumerate(names):
        write_photo(root / name, i)
    write_coco(root / "instances.json", names)
    COCO(str(root / "instances.json"))  # the official loader accepts the file
    pd.DataFrame({"image": names, "patient_id": ["P1", "P2"]}).to_csv(root / "metadata.csv")
    m = _manifest(root, "coco", tmp_path, annotations="instances.json")
    assert m["patient_id"].tolist() == ["P1", "P2"]
    for _, row in m.iterrows():
        np.testing.assert_array_equal(_mask(row), expected_mask())


def test_geojson_polygon_with_hole(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_photo(root / "PAT3_a.png", 0)
    write_geojson(root / "PAT3_a.geojson")
    m = _manifest(root, "geojson", tmp_path, patient_regex=r"^(PAT\d+)")
    assert m[["patient_id", "labels", "source"]].values.tolist() == [
        ["PAT3", "actinic,seborrheic", "geojson"]
    ]
    np.testing.assert_array_equal(_mask(m.iloc[0]), expected_mask())


@pytest.mark.parametrize("image_path", ["../../etc/passwd", "/etc/hostname"])
def test_image_paths_outside_the_root_are_refused(tmp_path: Path, image_path: str) -> None:
    root = tmp_path / "data"
    write_photo(root / "PAT1_a.png", 0)
    write_labelme(root / "PAT1_a.json", image_path)
    with pytest.raises(DataError, match="points outside the data root") as e:
        _manifest(root, "labelme", tmp_path, patient_regex=r"^(PAT\d+)")
    assert str(root / "PAT1_a.json") in str(e.value) and image_path in str(e.value)


def test_every_polygon_problem_at_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_photo(root / "PAT1_a.png", 0)
    write_photo(root / "PAT2_a.png", 0)  # the same photo under a second patient
    write_photo(root / "PAT3_a.png", 3)
    write_photo(root / "nobody.png", 4)
    for stem in ["PAT1_a", "PAT2_a", "nobody"]:
        write_labelme(root / f"{stem}.json", f"{stem}.png")
    write_labelme(root / "PAT3_a.json", "PAT3_a.png", height=50)  # wrong stated size
    doc = json.loads((root / "PAT3_a.json").read_text())
    doc["shapes"] += [
        {"label": "nevus", "points": ring((1, 1, 4, 4)), "shape_type": "polygon"},
        {"label": "actinic", "points": [[1, 1], [3, 3]], "shape_type": "line"},
        {"label": "actinic", "points": [[0, 0], [10, 10], [10, 0], [0, 10]]},  # self-crossing
        {"label": "seborrheic", "points": ring((8, 8, 12, 12))},  # overlaps the AK square
        {"label": "actinic", "points": ring((100, 100, 110, 110))},  # off the photo
    ]
    (root / "PAT3_a.json").write_text(json.dumps(doc))
    (root / "broken.json").write_text("{not json")
    with pytest.raises(DataError) as e:
        _manifest(root, "labelme", tmp_path, patient_regex=r"^(PAT\d+)_")
    msg = str(e.value)
    for text in [
        "broken.json: cannot read as JSON",
        "label 'nevus' is neither a class",
        "shape type 'line' cannot outline a lesion",
        "is not a valid polygon (Self-intersection",
        "overlaps an outline of another class by 16 pixels",
        "covers no pixel of the 48x40 photo",
        "says PAT3_a.png is 48x50 but it is 48x40",
        "nobody.png: data.patient_regex",
        "(patient PAT2) has the same pixels as",
        "9 problems in the input data",
    ]:
        assert text in msg, msg


def test_labelme_study_cuts_patches_of_both_classes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(3):
        big = np.random.default_rng(i).integers(0, 256, (96, 96, 3), dtype=np.uint8)
        (root / f"PAT{i}_a.png").parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(big).save(root / f"PAT{i}_a.png")
        shapes = [
            {"label": "actinic", "points": ring((0, 0, 40, 40)), "shape_type": "polygon"},
            {"label": "seborrheic", "points": ring((56, 56, 96, 96)), "shape_type": "polygon"},
        ]
        doc = {"shapes": shapes, "imagePath": f"PAT{i}_a.png", "imageHeight": 96, "imageWidth": 96}
        (root / f"PAT{i}_a.json").write_text(json.dumps(doc))
    cfg = _config(root, "labelme", patient_regex=r"^(PAT\d+)_")
    cfg["patches"] = {"size": 16, "stride": 16, "min_lesion_fraction": 0.6, "healthy_margin": 2}
    config, run = write_config(tmp_path / "c.yaml", cfg), tmp_path / "run"
    assert main(["data", str(config), "--run-dir", str(run)]) == 0
    assert main(["patches", str(config), "--run-dir", str(run)]) == 0
    index = pd.read_parquet(run / "patches" / "index.parquet")
    # per photo: 2x2 grid cells inside each 40 px square, healthy cells away from both
    counts = index.groupby("class").size().to_dict()
    assert counts["AK"] == counts["SK"] == 3 * 4 and counts["healthy"] > 0


def test_new_outlines_give_a_new_mask_path(tmp_path: Path) -> None:
    """The patches stage's fingerprint lists mask paths: an edited outline must change the path."""
    root = tmp_path / "data"
    write_photo(root / "PAT1_a.png", 0)
    write_labelme(root / "PAT1_a.json", "PAT1_a.png")
    before = _manifest(root, "labelme", tmp_path, patient_regex=r"^(PAT\d+)")["annotation"][0]
    doc = json.loads((root / "PAT1_a.json").read_text())
    doc["shapes"][0]["points"][0] = [4, 4]
    (root / "PAT1_a.json").write_text(json.dumps(doc))
    after = _manifest(root, "labelme", tmp_path, patient_regex=r"^(PAT\d+)")["annotation"][0]
    assert before != after and Path(before).is_file() and Path(after).is_file()


SLIVER = [[10.1, 30.1], [10.4, 30.1], [10.2, 30.3]]  # inside the photo, around no pixel centre


def _add_sliver(root: Path, source: str) -> None:
    """Write a study of ``source`` whose file also holds one sub-pixel outline."""
    if source == "labelme":
        write_photo(root / "PAT1_a.png", 0)
        write_labelme(root / "PAT1_a.json", "PAT1_a.png")
        doc = json.loads((root / "PAT1_a.json").read_text())
        doc["shapes"].append({"label": "actinic", "points": SLIVER, "shape_type": "polygon"})
        (root / "PAT1_a.json").write_text(json.dumps(doc))
    elif source == "coco":
        write_photo(root / "PAT1_a.png", 0)
        write_coco(root / "instances.json", ["PAT1_a.png"])
        doc = json.loads((root / "instances.json").read_text())
        flat = [v for point in SLIVER for v in point]
        sliver = {"id": 99, "image_id": 1, "category_id": 1, "iscrowd": 0}
        sliver |= {"segmentation": [flat], "area": 0.03, "bbox": [10, 30, 1, 1]}
        doc["annotations"].append(sliver)
        (root / "instances.json").write_text(json.dumps(doc))
    else:
        write_photo(root / "PAT1_a.png", 0)
        write_geojson(root / "PAT1_a.geojson")
        doc = json.loads((root / "PAT1_a.geojson").read_text())
        geometry = {"type": "Polygon", "coordinates": [[*SLIVER, SLIVER[0]]]}
        props = {"classification": {"name": "actinic"}}
        doc["features"].append({"type": "Feature", "properties": props, "geometry": geometry})
        (root / "PAT1_a.geojson").write_text(json.dumps(doc))


@pytest.mark.parametrize("source", ["labelme", "coco", "geojson"])
def test_a_sub_pixel_outline_is_skipped_with_a_warning(
    tmp_path: Path, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    _add_sliver(root, source)
    extra = {"annotations": "instances.json"} if source == "coco" else {}
    with caplog.at_level("WARNING", logger="skintl.data.polygons"):
        m = _manifest(root, source, tmp_path, patient_regex=r"^(PAT\d+)_", **extra)
    assert len(m) == 1 and "actinic" in m["labels"].iloc[0]  # the other outlines came through
    (line,) = [r.getMessage() for r in caplog.records if "degenerate" in r.getMessage()]
    assert "1 degenerate outline(s) skipped" in line and "holds no pixel centre" in line
    assert "PAT1_a.png" in line
