"""Readers of photos and masks that every data source shares (a floor below the sources)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from skintl.data.orientation import oriented
from skintl.data.validate import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MANIFEST_COLUMNS = ["image_path", "annotation", "patient_id", "labels", "source"]


@contextmanager
def _pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb guard as an error at ``max_pixels`` (None: Pillow's limit)."""
    default = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = max_pixels or default
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = default


def _decode(path: Path, what: str, max_pixels: int | None) -> np.ndarray:
    try:
        with _pixel_limit(max_pixels), Image.open(path) as im:
            shown = oriented(im)  # photos and masks alike (skintl.data.orientation)
            return np.asarray(shown.convert("RGB") if what == "image" else shown)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found (check the metadata path)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(
            f"{path}: {what} refused as a possible decompression bomb ({e}); if you trust the "
            "file, raise data.max_image_pixels in the config"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(
            f"{path}: cannot decode {what} ({e}); replace the file or drop its row from the "
            "metadata"
        ) from None


def read_rgb(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image as displayed (EXIF orientation applied) into (H, W, 3) uint8, or raise
    :class:`DataError` naming the file.

    Images over ``max_pixels`` pixels (None: Pillow's limit) are refused as possible
    decompression bombs.
    """
    return _decode(path, "image", max_pixels)


def read_mask(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode a label mask as displayed (its own EXIF orientation applied, as its photo's) into
    (H, W) uint8 (first channel if it has several)."""
    arr = _decode(path, "mask", max_pixels)
    return arr[..., 0] if arr.ndim == 3 else arr
