"""Reading photos to scan: EXIF orientation, mode conversion, the decompression-bomb guard.

Photos and doctor's masks are oriented by the rule every stage shares
(:mod:`skintl.data.orientation`), so a scan sees the photo as its patches were cut from it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from skintl.data.orientation import oriented
from skintl.names import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_MAX_PIXELS", "ScanError", "read_doctor_mask", "read_photo", "resize"]


class ScanError(ValueError):
    """A photo or option that cannot be scanned; the message names the file and the fix."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; 16- and 32-bit grey is scaled by its own maximum to 8 bits."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")  # transparent pixels become white, as viewers show them
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")  # L, P, CMYK, YCbCr, RGB


def read_photo(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo as shown (EXIF orientation applied) into (H, W, 3) uint8.

    Raises :class:`ScanError` (one line) for a missing or undecodable file, or one larger than
    ``max_pixels`` (Pillow's decompression-bomb guard, which stays on; None turns it off).
    """
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return np.asarray(_to_rgb(oriented(im)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ScanError(
            f"{path}: more than {max_pixels} pixels, refused as a possible decompression bomb; "
            "if you trust the file, raise the limit with --max-pixels N"
        ) from None
    except FileNotFoundError:
        raise ScanError(f"{path}: photo not found (check the path)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ScanError(
            f"{path}: cannot decode the photo ({e}); convert it to PNG or JPEG"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def read_doctor_mask(path: Path, shape: tuple[int, int], value: int | None = None) -> np.ndarray:
    """The doctor's outline as an (H, W) bool mask matching ``shape`` (its EXIF orientation
    applied, as its photo's): nonzero pixels, or only those equal to ``value`` (one class of a
    multi-class mask)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(oriented(im).convert("L"))
    except FileNotFoundError:
        raise ScanError(f"{path}: doctor mask not found (check --doctor-mask)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ScanError(f"{path}: cannot decode the doctor mask ({e})") from None
    if arr.shape != shape:
        raise ScanError(
            f"{path}: doctor mask is {arr.shape[1]}x{arr.shape[0]} px but its photo is "
            f"{shape[1]}x{shape[0]}; give the mask drawn on this photo"
        )
    return arr > 0 if value is None else arr == value


def resize(arr: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an (H, W[, 3]) uint8 or bool array to ``shape`` (h, w) with Pillow."""
    if arr.shape[:2] == shape:
        return arr
    is_bool = arr.dtype == bool
    im = Image.fromarray(arr.astype(np.uint8) * 255 if is_bool else arr)
    method = Image.Resampling.NEAREST if nearest or is_bool else Image.Resampling.LANCZOS
    out = np.asarray(im.resize((shape[1], shape[0]), method, reducing_gap=None if nearest else 3.0))
    return out > 127 if is_bool else out


def photo_date(path: Path) -> str | None:
    """When the photo was taken, from its EXIF (``YYYY:MM:DD HH:MM:SS``, which sorts as text),
    or None when it does not say."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
    except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError):
        return None
    taken = exif.get_ifd(0x8769).get(36867) or exif.get(306)  # DateTimeOriginal, DateTime
    return str(taken).strip() or None if taken else None
