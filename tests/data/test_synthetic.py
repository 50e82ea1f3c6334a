"""Tests for the synthetic masked-folder generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from skintl.data.synthetic import (
    LABEL_AK,
    LABEL_SK,
    METADATA_COLUMNS,
    REGIONS,
    generate,
    make_image,
    plan_labels,
)

N_PATIENTS, PER_PATIENT, SIZE, PATCH = 4, 2, 256, 50


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synthetic"), N_PATIENTS, PER_PATIENT, SIZE, 3).parent


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def _load(root: Path, row: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(root / row["image"]) as im, Image.open(root / row["mask"]) as mk:
        assert (im.mode, mk.mode) == ("RGB", "L")
        return np.asarray(im).astype(np.float64), np.asarray(mk)


def _images(root: Path) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    return [(row, *_load(root, row)) for row in _rows(root)]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    generate(tmp_path / "a", 2, 2, 64, seed=7)
    generate(tmp_path / "b", 2, 2, 64, seed=7)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    # photos and masks, metadata.csv, and the follow-up: 3 visits x (photo, mask), CSV, truth
    assert len(a) == 2 * 2 * 2 + 1 + 3 * 2 + 2
    assert a == b


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    generate(tmp_path / "a", 2, 1, 64, seed=7)
    generate(tmp_path / "b", 2, 1, 64, seed=8)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.startswith("images"))


def test_earlier_patients_do_not_depend_on_patient_count(tmp_path: Path) -> None:
    generate(tmp_path / "one", 1, 2, 64, seed=5)
    generate(tmp_path / "two", 2, 2, 64, seed=5)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert all(two[k] == v for k, v in one.items() if k != "metadata.csv")


@pytest.mark.parametrize("bad", [(0, 1, 64), (1, 0, 64), (1, 1, 32)])
def test_generate_rejects_bad_arguments(tmp_path: Path, bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="need n_patients"):
        generate(tmp_path, *bad)


@pytest.mark.parametrize("size", [64, 100, 256])
@pytest.mark.parametrize("labels", [(LABEL_AK,), (LABEL_SK,), (LABEL_AK, LABEL_SK, LABEL_SK)])
def test_make_image_shapes_and_labels(size: int, labels: tuple[int, ...]) -> None:
    image, mask = make_image(np.random.default_rng(size), size, labels)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert mask.shape == (size, size) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, *labels}


@pytest.mark.parametrize("n_images", [1, 2, 3, 5])
def test_plan_labels_always_has_ak_and_sk(n_images: int) -> None:
    for seed in range(50):
        plan = plan_labels(np.random.default_rng(seed), n_images)
        assert len(plan) == n_images and all(1 <= len(labels) <= 3 for labels in plan)
        assert {v for labels in plan for v in labels} == {LABEL_AK, LABEL_SK}


def test_metadata_columns_and_paths(dataset: Path) -> None:
    with open(dataset / "metadata.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == METADATA_COLUMNS
    rows = _rows(dataset)
    assert len(rows) == N_PATIENTS * PER_PATIENT
    assert len({r["lesion_id"] for r in rows}) == len(rows)
    assert {r["patient_id"] for r in rows} == {f"P{i:03d}" for i in range(1, N_PATIENTS + 1)}
    for r in rows:
        assert (dataset / r["image"]).is_file() and (dataset / r["mask"]).is_file()
        assert r["image"] == f"images/{r['lesion_id']}.png"
        assert r["lesion_id"].startswith(r["patient_id"] + "_")
        assert 1 <= int(r["fitzpatrick"]) <= 6 and 18 <= int(r["age"]) <= 100
        assert r["region"] in REGIONS


def test_masks_match_images_and_diagnostic(dataset: Path) -> None:
    for row, image, mask in _images(dataset):
        assert image.shape == (SIZE, SIZE, 3) and mask.shape == (SIZE, SIZE)
        present = set(np.unique(mask).tolist())
        assert present <= {0, LABEL_AK, LABEL_SK}
        expected = [
            name for value, name in ((LABEL_AK, "AK"), (LABEL_SK, "SK")) if value in present
        ]
        assert row["diagnostic"] == "+".join(expected)


def test_every_patient_has_ak_and_sk_pixels(dataset: Path) -> None:
    found: dict[str, set[int]] = {}
    for row, _, mask in _images(dataset):
        found.setdefault(row["patient_id"], set()).update(np.unique(mask).tolist())
    assert len(found) == N_PATIENTS
    assert all({LABEL_AK, LABEL_SK} <= labels for labels in found.values())


def test_coverage_and_healthy_patches_exist(dataset: Path) -> None:
    for _, _, mask in _images(dataset):
        assert 0.08 <= np.mean(mask > 0) <= 0.35
        far = ndimage.distance_transform_edt(mask == 0) > 10  # healthy = far from any lesion
        healthy_windows = ndimage.minimum_filter(far.astype(np.uint8), PATCH, mode="constant")
        assert healthy_windows.any()


def test_lesions_of_each_class_fill_patches(dataset: Path) -> None:
    best = {LABEL_AK: 0.0, LABEL_SK: 0.0}
    for _, _, mask in _images(dataset):
        for label in best:
            fraction = ndimage.uniform_filter((mask == label).astype(float), PATCH)
            best[label] = max(best[label], float(fraction.max()))
    assert min(best.values()) > 0.9


def test_ak_and_sk_are_kept_apart(dataset: Path) -> None:
    for _, _, mask in _images(dataset):
        if {LABEL_AK, LABEL_SK} <= set(np.unique(mask).tolist()):
            assert ndimage.distance_transform_edt(mask != LABEL_AK)[mask == LABEL_SK].min() >= 10


def test_ak_is_redder_than_sk_for_every_patient(dataset: Path) -> None:
    redness: dict[str, dict[int, list[np.ndarray]]] = {}
    for row, image, mask in _images(dataset):
        per_class = redness.setdefault(row["patient_id"], {LABEL_AK: [], LABEL_SK: []})
        for label, values in per_class.items():
            values.append((image[..., 0] - image[..., 1])[mask == label])
    for per_class in redness.values():
        ak, sk = (np.concatenate(per_class[label]).mean() for label in (LABEL_AK, LABEL_SK))
        assert ak > sk


def test_sk_is_darker_than_surrounding_skin(dataset: Path) -> None:
    for _, image, mask in _images(dataset):
        sk = mask == LABEL_SK
        if sk.any():
            ring = (ndimage.distance_transform_edt(~sk) < 15) & (mask == 0)
            gray = image.mean(axis=-1)
            assert gray[sk].mean() < 0.9 * gray[ring].mean()


def test_healthy_redness_overlaps_ak(dataset: Path) -> None:
    """Not trivial: some healthy skin (erythema, tone) is redder than a typical AK pixel."""
    ak, healthy = [], []
    for _, image, mask in _images(dataset):
        rg = image[..., 0] - image[..., 1]
        ak.append(rg[mask == LABEL_AK])
        healthy.append(rg[ndimage.distance_transform_edt(mask == 0) > 10])
    assert np.mean(np.concatenate(healthy) > np.median(np.concatenate(ak))) > 0.01
