"""Overlays in the original work's colours, and probability heat-maps.

Outlines: the doctor's region in dark blue, predicted regions that detect it (true positives,
:mod:`skintl.scan.regions`) in light blue, other predicted regions (false positives) in black,
and doctor regions left undetected (missed) in orange, which the original figures did not
distinguish. Predicted regions are also tinted in their colour; a flood (a predicted region over
half the skin) is outlined in magenta and named in the legend. A legend strip is added under the
photo. Heat-maps get a colour bar naming the class whose probability they show.
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
FLOOD = (255, 0, 255)  # magenta
LEGEND = (
    ("doctor's region", DOCTOR),
    ("true positive", TRUE_POSITIVE),
    ("false positive", FALSE_POSITIVE),
    ("missed doctor region", MISSED),
)
FLOOD_LEGEND = ("FLOOD: a predicted region over half the skin", FLOOD)
LEGEND_HEIGHT = 22
#: the heat-maps' colour map, 0 (black) to 1 (pale yellow)
COLOURMAP = "inferno"


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    edge = find_boundaries(mask, mode="inner")
    return ndimage.binary_dilation(edge, iterations=width - 1) & mask if width > 1 else edge


def legend(width: int, items: tuple[tuple[str, tuple[int, int, int]], ...]) -> np.ndarray:
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
    pred_flood: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) photo + region labels -> (H + legend, W, 3) uint8 overlay.

    Args:
        pred: (H, W) predicted region labels; pred_tp: (n,) true-positive flag per region
            (None without a doctor's mask: every region is drawn as a true positive).
        doctor_labels: (H, W) doctor region labels; doctor_found: (n,) detected flag per region.
        pred_flood: (n,) flood flag per predicted region (outlined in magenta, named in the
            legend).
    """
    out = photo.astype(np.float32).copy()
    n = int(pred.max())
    tp = pred_tp if pred_tp is not None else np.ones(n, bool)
    flood = pred_flood if pred_flood is not None else np.zeros(n, bool)
    colours = np.array([FALSE_POSITIVE, TRUE_POSITIVE], np.float32)[tp.astype(int)]
    inside = pred > 0
    out[inside] = (1 - alpha) * out[inside] + alpha * colours[pred[inside] - 1]
    if doctor_labels is not None and doctor_found is not None:
        doc_edge = _edge(doctor_labels > 0, width)
        missed = np.isin(doctor_labels, np.flatnonzero(~doctor_found) + 1)
        out[doc_edge] = DOCTOR
        out[doc_edge & missed] = MISSED
    for i in range(1, n + 1):
        out[_edge(pred == i, width)] = FLOOD if flood[i - 1] else colours[i - 1]
    items = LEGEND if doctor_labels is not None else LEGEND[1:2]
    items = (FLOOD_LEGEND, *items) if flood.any() else items
    strip = legend(photo.shape[1], items)
    return np.concatenate([out.round().astype(np.uint8), strip], axis=0)


def heatmap(photo: np.ndarray, prob: np.ndarray, label: str, alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3) photo and (H, W) probability (NaN off the skin) -> (H + bar, W, 3) uint8
    overlay with a colour bar from 0 to 1 titled ``label`` (e.g. "probability of AK")."""
    from matplotlib import colormaps

    grey = photo.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    valid = ~np.isnan(prob)
    colour = colormaps[COLOURMAP](np.nan_to_num(prob, nan=0.0))[..., :3] * 255
    out = grey * 0.6
    out[valid] = (1 - alpha) * photo[valid] + alpha * colour[valid]
    img = np.clip(out, 0, 255).round().astype(np.uint8)
    return np.concatenate([img, colour_bar(photo.shape[1], label)], axis=0)


def colour_bar(width: int, label: str, height: int = 2 * LEGEND_HEIGHT) -> np.ndarray:
    """A white strip: ``label``, then the colour map from 0 (left) to 1 (right) with ticks.

    Returns:
        (height, width, 3) uint8; the bar spans columns ``[pad, width - pad)`` of its rows
        ``[LEGEND_HEIGHT - 4, LEGEND_HEIGHT + 8)``.
    """
    from matplotlib import colormaps

    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    pad = 12
    draw.text((4, 3), label, fill=(0, 0, 0))
    top = LEGEND_HEIGHT - 4
    ramp = colormaps[COLOURMAP](np.linspace(0, 1, max(width - 2 * pad, 2)))[:, :3] * 255
    bar = np.asarray(strip).copy()
    bar[top : top + 12, pad : pad + len(ramp)] = ramp.round().astype(np.uint8)
    strip = Image.fromarray(bar)
    draw = ImageDraw.Draw(strip)
    for v in (0.0, 0.5, 1.0):
        x = pad + round(v * (len(ramp) - 1))
        text = f"{v:g}"
        tx = min(max(0, x - int(draw.textlength(text)) // 2), width - int(draw.textlength(text)))
        draw.text((tx, top + 13), text, fill=(0, 0, 0))
    return np.asarray(strip)


#: colours of the change map's classes (:data:`skintl.scan.compare.CHANGE_CLASSES`): a lesion at
#: both visits in the maps' light blue; gone in green (a cleared region dark, the receded edge of
#: a persisting one pale); appeared in red (a new region dark, the grown edge of one pale)
CHANGE_COLOURS = {
    "persisting": TRUE_POSITIVE,
    "receded": (152, 223, 138),
    "grown": (250, 128, 114),
    "cleared": (0, 128, 0),
    "new": (200, 0, 0),
}
NOT_SHARED = ("grey: not skin in both photos", (128, 128, 128))


def change_map(
    photo: np.ndarray, pixels: np.ndarray, shared: np.ndarray, classes: tuple[str, ...],
    alpha: float = 0.55,
) -> np.ndarray:  # fmt: skip
    """(H, W, 3) BEFORE photo, (H, W) change classes (0 none, i + 1 = ``classes[i]``) and the
    (H, W) shared skin -> (H + legend, W, 3) uint8: classes tinted, the rest of the shared skin
    as photographed, everything else grey, and a legend of every class."""
    out = photo.astype(np.float32).copy()
    grey = out.mean(axis=2, keepdims=True)
    out[~shared] = 0.35 * out[~shared] + 0.65 * grey[~shared]  # washed out
    for i, c in enumerate(classes, start=1):
        hit = pixels == i
        out[hit] = (1 - alpha) * out[hit] + alpha * np.array(CHANGE_COLOURS[c], np.float32)
    edge = _edge(shared, 1)
    out[edge] = NOT_SHARED[1]
    items = (*((c, CHANGE_COLOURS[c]) for c in classes), NOT_SHARED)
    strip = legend(photo.shape[1], items)
    return np.concatenate([np.clip(out, 0, 255).round().astype(np.uint8), strip], axis=0)
