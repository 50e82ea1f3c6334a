"""Change classes, burden over shared skin and visit checks on hand-made cases; the synthetic
follow-up's burden change recovered through registration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skintl.data.followup import SHRINK, make_visits
from skintl.data.synthetic import LABEL_AK, sample_patient
from skintl.scan.compare import (
    CHANGE_CLASSES,
    burden_change,
    change_regions,
    footprint,
    frame_matrix,
    warp_into,
)
from skintl.scan.image import ScanError
from skintl.scan.register import register
from skintl.scan.visits import Visit, check_visits


def _disk(shape: tuple[int, int], cy: int, cx: int, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def test_change_classes_on_a_hand_made_case() -> None:
    s = (100, 200)
    a, b, c = _disk(s, 25, 25, 10), _disk(s, 25, 75, 12), _disk(s, 75, 25, 8)
    outside = _disk(s, 75, 185, 6)  # lesion at both visits, but off the shared skin
    before = a | b | c | outside
    after = a | _disk(s, 25, 75, 6) | _disk(s, 75, 120, 9) | outside  # b shrunk, c gone, new
    shared = np.ones(s, bool)
    shared[:, 170:] = False
    ch = change_regions(before, after, shared)
    assert ch.counts() == {"regions_persisting": 2, "regions_cleared": 1, "regions_new": 1}
    code = {k: i + 1 for i, k in enumerate(CHANGE_CLASSES)}
    assert (ch.pixels[a] == code["persisting"]).all()
    assert (ch.pixels[c] == code["cleared"]).all()
    assert (ch.pixels[_disk(s, 75, 120, 9)] == code["new"]).all()
    ring = b & ~_disk(s, 25, 75, 6)
    assert (ch.pixels[ring] == code["receded"]).all() and not (ch.pixels == code["grown"]).any()
    assert not ch.pixels[outside].any()


def test_a_barely_touching_region_is_not_persisting() -> None:
    s = (60, 60)
    before = _disk(s, 30, 20, 10)
    after = _disk(s, 30, 40, 10.5)  # overlaps before by a sliver, under MIN_OVERLAP
    ch = change_regions(before, after, np.ones(s, bool))
    assert ch.counts() == {"regions_persisting": 0, "regions_cleared": 1, "regions_new": 1}


def test_burden_change_over_the_shared_skin() -> None:
    shared = np.zeros((10, 10), bool)
    shared[:, :5] = True  # 50 px
    before, after = np.zeros_like(shared), np.zeros_like(shared)
    before[:4, :5] = True  # 20 px: 40 %
    before[:, 8] = True  # off the shared skin
    after[:1, :5] = True  # 5 px: 10 %
    row = burden_change(before, after, shared)
    assert row["pred_burden_before_pct"] == pytest.approx(40)
    assert row["pred_burden_after_pct"] == pytest.approx(10)
    assert row["pred_burden_change_pct"] == pytest.approx(-30)
    assert row["pred_burden_relative_change_pct"] == pytest.approx(-75)
    assert np.isnan(burden_change(after & False, after, shared)["pred_burden_relative_change_pct"])


def test_frame_matrix_maps_pixel_centres_as_a_resize_does() -> None:
    m = frame_matrix(np.eye(3), 0.5, 2.0)  # AFTER at half size, BEFORE at double size
    # AFTER's working px 0 spans original px 0-1 (centre 0.5) -> BEFORE's working px 1.5
    assert m @ [0, 0, 1] == pytest.approx([1.5, 1.5, 1])
    assert m @ [1, 0, 1] == pytest.approx([5.5, 1.5, 1])


def test_warp_into_and_footprint() -> None:
    shift = np.array([[1.0, 0, 3], [0, 1, 0], [0, 0, 1]])  # AFTER px -> BEFORE px: 3 px right
    arr = np.zeros((5, 6), np.int64)
    arr[2, 1] = 7
    out = warp_into(arr, shift, (5, 10))
    assert out[2, 4] == 7 and out.sum() == 7
    fp = footprint(shift, (5, 6), (5, 10))
    assert fp[:, 3:9].all() and not fp[:, :3].any() and not fp[:, 9:].any()


@pytest.mark.parametrize(
    ("pids", "labels", "why"),
    [
        (["P1", "P2"], [None, None], "2 patients"),
        (["P1", "P1"], ["2", "1"], "does not come after"),
        ([None, None], ["2024-05-01", "2024-03-01"], "does not come after"),
        ([None, None, None], ["1", "2", "2"], "does not come after"),
    ],
)
def test_visits_of_two_patients_or_out_of_order_are_refused(
    pids: list, labels: list, why: str
) -> None:
    pairs = enumerate(zip(pids, labels, strict=True))
    visits = [Visit(Path(f"v{i}.png"), None, p, v) for i, (p, v) in pairs]
    with pytest.raises(ScanError, match=why):
        check_visits(visits)


def test_visits_in_order_pass() -> None:
    check_visits([Visit(Path("a.png"), None, "P1", "9"), Visit(Path("b.png"), None, "P1", "10")])
    check_visits([Visit(Path("a.png")), Visit(Path("b.png"))])  # nothing known: nothing checked


def test_synthetic_burden_change_is_recovered_through_registration() -> None:
    """The follow-up's true masks as the maps: after registration, the AK burden's relative
    change over the shared skin is the true one (in visit 1's frame) within 3 points."""
    v = make_visits(sample_patient(np.random.default_rng([0, 0]), 0), 256, seed=0)
    (p1, m1, _), (p2, m2, truth2) = v[0], v[1]
    reg = register(p1, p2)
    inside = footprint(reg.matrix, m2.shape, m1.shape)
    after = warp_into(m2 == LABEL_AK, reg.matrix, m1.shape)
    got = burden_change(m1 == LABEL_AK, after, inside)["pred_burden_relative_change_pct"]
    ak1, ak2 = (m1 == LABEL_AK) & inside, (truth2 == LABEL_AK) & inside
    true = 100.0 * (ak2.sum() - ak1.sum()) / ak1.sum()
    assert got == pytest.approx(true, abs=3.0)
    assert -100 < true < -100 * (1 - SHRINK) / 2  # two AK cleared, two shrunk, one new
    ch = change_regions(m1 == LABEL_AK, after, inside)
    n_in = ch.counts()
    assert n_in["regions_new"] == 1 and n_in["regions_cleared"] >= 1


def test_exif_dates_order_the_visits_when_none_is_given(tmp_path: Path) -> None:
    from PIL import Image

    from skintl.scan.visits import with_exif_dates

    paths = []
    for name, taken in (("a.jpg", "2024:05:01 10:00:00"), ("b.jpg", "2024:03:01 09:00:00")):
        exif = Image.Exif()
        exif[306] = taken  # DateTime
        Image.new("RGB", (8, 8)).save(tmp_path / name, exif=exif)
        paths.append(tmp_path / name)
    visits = with_exif_dates([Visit(p) for p in paths])
    assert [v.visit for v in visits] == ["2024:05:01 10:00:00", "2024:03:01 09:00:00"]
    with pytest.raises(ScanError, match=r"b\.jpg: visit 2024:03:01 09:00:00 does not come after"):
        check_visits(visits)
    given = with_exif_dates([Visit(paths[0], visit="1"), Visit(paths[1], visit="2")])
    assert [v.visit for v in given] == ["1", "2"]  # labels given: EXIF dates are not read
