"""The one orientation rule every stage reads photos and masks with.

A file is used as viewers show it: its EXIF orientation tag is applied (``ImageOps.exif_transpose``)
to photos and masks alike, each by its own tag, when the data stage checks and cuts patches, when
dense features read whole photos, when ``skintl scan`` reads a photo and its doctor's mask, and when
the scan stage reads the study's masks. A mask is therefore drawn on the photo as displayed; a mask
drawn on the stored (unrotated) pixels of a rotated photo no longer fits it, and a 90-degree case
is refused as a size mismatch.
"""

from __future__ import annotations

from PIL import Image, ImageOps

#: recorded in the patches' fingerprint: patches cut under another rule are recut
ORIENTATION_RULE = "exif_transpose-v1"


def oriented(im: Image.Image) -> Image.Image:
    """``im`` as displayed: its EXIF orientation applied (a copy without the tag when rotated)."""
    return ImageOps.exif_transpose(im)
