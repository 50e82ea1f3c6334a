"""Photos to scan: EXIF orientation, mode conversion, the decompression-bomb guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skintl.scan.image import ScanError, read_doctor_mask, read_photo


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)  # left half red, as stored
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(tmp_path / "o.png", exif=exif)
    shown = read_photo(tmp_path / "o.png")
    assert shown.shape == (60, 40, 3)
    assert shown[5, 20, 0] == 255 and shown[55, 20, 0] == 0  # stored left is shown on top


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 100, (100, 100, 100)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # fully transparent: white
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, value: object, expected: tuple) -> None:
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (8, 6), value).save(path)  # type: ignore[arg-type]
    out = read_photo(path)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == expected


def test_16_bit_grey_is_scaled(tmp_path: Path) -> None:
    arr = np.zeros((4, 4), np.uint16)
    arr[0, 0], arr[0, 1] = 65535, 32768
    Image.fromarray(arr).save(tmp_path / "g.png")
    out = read_photo(tmp_path / "g.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and out[0, 1, 0] == 128 and out[1, 1, 0] == 0


def test_decompression_bomb_is_a_one_line_error(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    for limit in (1000, 9000):  # Pillow warns above the limit and fails above twice it
        with pytest.raises(ScanError, match=r"big\.png: more than \d+ pixels.*--max-pixels"):
            read_photo(tmp_path / "big.png", max_pixels=limit)
    assert read_photo(tmp_path / "big.png", max_pixels=10_000).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS != 1000  # the global guard is restored


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ScanError, match=r"bad\.jpg: cannot decode"):
        read_photo(tmp_path / "bad.jpg")
    with pytest.raises(ScanError, match="photo not found"):
        read_photo(tmp_path / "none.jpg")
    Image.new("L", (5, 5)).save(tmp_path / "m.png")
    assert not read_doctor_mask(tmp_path / "m.png", (5, 5)).any()
    Image.fromarray(np.array([[0, 1, 2, 2, 1]] * 5, np.uint8)).save(tmp_path / "mc.png")
    assert read_doctor_mask(tmp_path / "mc.png", (5, 5)).sum() == 20
    assert read_doctor_mask(tmp_path / "mc.png", (5, 5), value=2).sum() == 10
    with pytest.raises(ScanError, match=r"doctor mask is 5x5 px but its photo is 6x4"):
        read_doctor_mask(tmp_path / "m.png", (4, 6))
