"""Overlays in the original work's colours, and probability heat-maps.

Outlines: the doctor's region in dark blue, predicted regions that overlap it (true positives) in
light blue, predicted regions that overlap none (false positives) in black, and doctor regions
no prediction overlaps (missed) in orange, which the original figures did not distinguish.
Predicted regions are also tinted in their colour. A legend strip is added under the photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.segmentation import find_boundaries

DOCTOR = (0, 0, 139)  # dark blue
TRUE_POSITIVE = (135, 206, 250)  # light blue
FALSE_POSITIVE = (0, 0, 0)  # black
MISSED = (255, 140, 0)  # orange
LEGEND = (
    ("doctor's region", DOCTOR),
    ("true positive", TRUE_POSITIVE),
    ("false positive", FALSE_POSITIVE),
    ("missed doctor region", MISSED),
)
LEGEND_HEIGHT = 22


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    edge = find_boundaries(mask, mode="inner")
    return ndimage.binary_dilation(edge, iterations=width - 1) & mask if width > 1 else edge


def _legend(width: int, items: tuple[tuple[str, tuple[int, int, int]], ...]) -> np.ndarray:
    """A white strip with a swatch and a label per item, wrapped onto as many rows as needed."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    places, x, row = [], 4, 0
    for text, colour in items:
        w = 15 + int(measure.textlength(text)) + 12
        if x > 4 and x + w > width:
            x, row = 4, row + 1
        places.append((x, row * LEGEND_HEIGHT, text, colour))
        x += w
    strip = Image.new("RGB", (width, (row + 1) * LEGEND_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for x, y, text, colour in places:
        draw.rectangle([x, y + 5, x + 11, y + 16], fill=colour, outline=(128, 128, 128))
        draw.text((x + 15, y + 5), text, fill=(0, 0, 0))
    return np.asarray(strip)


def overlay(
    photo: np.ndarray,
    pred: np.ndarray,
    pred_tp: np.ndarray | None,
    doctor_labels: np.ndarray | None,
    doctor_found: np.ndarray | None,
    width: int = 2,
    alpha: float = 0.3,
) -> np.ndarray:
    """(H, W, 3) photo + region labels -> (H + legend, W, 3) uint8 overlay.

    Args:
        pred: (H, W) predicted region labels; pred_tp: (n,) true-positive flag per region
            (None without a doctor's mask: every region is drawn as a true positive).
        doctor_labels: (H, W) doctor region labels; doctor_found: (n,) detected flag per region.
    """
    out = photo.astype(np.float32).copy()
    tp = pred_tp if pred_tp is not None else np.ones(int(pred.max()), bool)
    colours = np.array([FALSE_POSITIVE, TRUE_POSITIVE], np.float32)[tp.astype(int)]
    inside = pred > 0
    out[inside] = (1 - alpha) * out[inside] + alpha * colours[pred[inside] - 1]
    if doctor_labels is not None and doctor_found is not None:
        doc_edge = _edge(doctor_labels > 0, width)
        missed = np.isin(doctor_labels, np.flatnonzero(~doctor_found) + 1)
        out[doc_edge] = DOCTOR
        out[doc_edge & missed] = MISSED
    for i in range(1, int(pred.max()) + 1):
        out[_edge(pred == i, width)] = colours[i - 1]
    items = LEGEND if doctor_labels is not None else LEGEND[1:2]
    legend = _legend(photo.shape[1], items)
    return np.concatenate([out.round().astype(np.uint8), legend], axis=0)


def heatmap(photo: np.ndarray, prob: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3) photo and (H, W) probability (NaN off the skin) -> (H, W, 3) uint8 overlay."""
    from matplotlib import colormaps

    grey = photo.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    valid = ~np.isnan(prob)
    colour = colormaps["inferno"](np.nan_to_num(prob, nan=0.0))[..., :3] * 255
    out = grey * 0.6
    out[valid] = (1 - alpha) * photo[valid] + alpha * colour[valid]
    return np.clip(out, 0, 255).round().astype(np.uint8)
