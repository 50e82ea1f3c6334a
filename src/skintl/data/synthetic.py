"""Seeded synthetic clinical photos of AK-like and SK-like lesions, in masked-folder format.

Colour follows a two-pigment Beer-Lambert model, ``rgb = white * exp(-(m * eps_mel + h * eps_hb))``,
with a melanin map ``m`` and a haemoglobin map ``h``. The Fitzpatrick type sets ``m``; AK adds
patchy haemoglobin with an ill-defined border, roughness and whitish scale flecks; SK adds melanin
with a sharp "stuck-on" border, a dark rim, cracks, dark dots and a waxy sheen. Healthy skin gets
mild erythema, freckles and small naevi, so colour alone does not separate the classes, and every
photo gets uneven lighting, a colour cast, sensor noise and sometimes blur. The images are a test
fixture for the pipeline, not a model of real lesions.

Layout written by :func:`generate`::

    out_dir/images/<patient>_<k>.png   (H, W, 3) uint8
    out_dir/masks/<patient>_<k>.png    (H, W) uint8: 0 skin, 1 AK, 2 SK
    out_dir/metadata.csv               one row per image, columns METADATA_COLUMNS
    out_dir/followup/                  three visits of patient P001 (:mod:`skintl.data.followup`)
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import bezier_curve

from skintl.io import atomic_path
from skintl.labels import AK, SK

log = logging.getLogger(__name__)

LABEL_AK, LABEL_SK = 1, 2
LABEL_NAMES = {LABEL_AK: AK, LABEL_SK: SK}
REGIONS = ("FACE", "SCALP", "FOREARM", "HAND", "BACK", "CHEST")
METADATA_COLUMNS = (
    "image", "mask", "patient_id", "lesion_id", "diagnostic", "fitzpatrick", "age", "region",
)  # fmt: skip

_WHITE = np.array([0.98, 0.93, 0.88], np.float32)
_SCALE_RGB = np.array([0.92, 0.89, 0.82], np.float32)
_EPS_MEL = np.array([0.35, 0.50, 0.65], np.float32)  # melanin absorbs more towards blue
_EPS_HB = np.array([0.05, 0.55, 0.45], np.float32)  # haemoglobin absorbs green/blue, not red
_MELANIN = (0.3, 0.55, 0.9, 1.4, 2.1, 2.9)  # by Fitzpatrick type 1..6
_FITZ_P = (0.22, 0.3, 0.2, 0.14, 0.09, 0.05)  # AK is commoner on fair skin
_HAIRS = {"FACE": 2, "SCALP": 4, "FOREARM": 12, "HAND": 6, "BACK": 4, "CHEST": 8}


@dataclass(frozen=True)
class Patient:
    """Per-patient attributes shared by all of a patient's photos."""

    patient_id: str
    fitzpatrick: int
    age: int
    melanin: float
    blood: float


@dataclass
class Layers:
    """(H, W) float32 maps that :func:`render_layers` turns into colour."""

    melanin: np.ndarray
    blood: np.ndarray
    shade: np.ndarray  # multiplicative luminance (texture, cracks, hair)
    scale: np.ndarray  # blend weight towards whitish keratin scale / sheen


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance noise whose features are about ``scale`` pixels wide.

    Returns:
        (H, W) float32.
    """
    h, w = shape
    step = max(float(scale), 1.0)
    gh, gw = int(h / step) + 3, int(w / step) + 3
    out = rng.standard_normal((gh, gw)).astype(np.float32)
    if step > 1.0:  # bicubic upsampling of a smoothed coarse grid: fast and seamless
        coarse = Image.fromarray(ndimage.gaussian_filter(out, 0.8))
        fine = coarse.resize((round(gw * step), round(gh * step)), Image.Resampling.BICUBIC)
        out = np.asarray(fine)
    out = out[:h, :w]
    return (out - out.mean()) / (out.std() + 1e-6)


def blob_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    center: tuple[float, float],
    radius: float,
    irregularity: float = 0.35,
) -> np.ndarray:
    """Normalised radius of an irregular blob: below 1 inside, 1 on the outline.

    A rotated ellipse of area ``pi * radius**2`` whose outline is perturbed by harmonics 2-5 and
    by smooth noise (so it need not be star-shaped). Computed only in a box of half-width
    ``3.5 * radius`` around ``center``, where it stays above 1.5; it is 10 beyond.

    Returns:
        (H, W) float32.
    """
    half = 3.5 * radius + 4
    y0, x0 = max(int(center[0] - half), 0), max(int(center[1] - half), 0)
    y1, x1 = min(int(center[0] + half) + 1, shape[0]), min(int(center[1] + half) + 1, shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - np.float32(center[0]), xx - np.float32(center[1])
    angle, aspect = rng.uniform(0.0, np.pi), np.sqrt(rng.uniform(0.55, 1.0))
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    u = (dx * cos + dy * sin) * float(aspect)
    v = (dy * cos - dx * sin) / float(aspect)
    theta = np.arctan2(v, u)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        amp, phase = rng.uniform(0.0, irregularity) / k, rng.uniform(0, 2 * np.pi)
        outline += float(amp) * np.cos(k * theta + float(phase))
    rho = np.full(shape, 10.0, np.float32)
    noise = smooth_noise(rng, (y1 - y0, x1 - x0), max(radius / 3.0, 1.0))
    rho[y0:y1, x0:x1] = np.hypot(u, v) / (radius * outline) + 0.08 * noise
    return rho


def place_lesions(
    rng: np.random.Generator, size: int, labels: tuple[int, ...], coverage: float
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Place non-overlapping blobs, a gap apart, covering about ``coverage`` of the image.

    Returns:
        (H, W) uint8 label mask and one ``(label, (H, W) blob field)`` per lesion.
    """
    s = size / 256
    shares = rng.dirichlet(np.full(len(labels), 2.0))
    radii = np.clip(np.sqrt(shares * coverage * size * size / np.pi), 25 * s, 90 * s)
    mask = np.zeros((size, size), np.uint8)
    fields: list[tuple[int, np.ndarray]] = []
    for i in np.argsort(-radii, kind="stable"):  # largest first: it is the hardest to fit
        free = ndimage.distance_transform_edt(mask == 0) if mask.any() else None
        for attempt in range(80):
            r = radii[i] * 0.97**attempt
            center = rng.uniform(0.7 * r, size - 0.7 * r, 2)
            rho = blob_field(rng, (size, size), (center[0], center[1]), r)
            blob = rho < 1.0
            if blob.sum() > 20 and (free is None or free[blob].min() > 12 * s):
                break
        else:
            raise RuntimeError(f"could not place lesion {i} of {labels} in a {size}px image")
        mask[blob] = labels[i]
        fields.append((labels[i], rho))
    return mask, fields


def _spots(rng: np.random.Generator, shape: tuple[int, int], n: int, sigma: float) -> np.ndarray:
    """(H, W) float32 sum of ``n`` Gaussian spots of peak ~U(0.5, 1) at random positions."""
    out = np.zeros(shape, np.float32)
    idx = rng.integers(0, shape[0] * shape[1], n)
    np.add.at(out.reshape(-1), idx, rng.uniform(0.5, 1.0, n).astype(np.float32))
    return ndimage.gaussian_filter(out, sigma) * (2 * np.pi * sigma**2)


def skin_layers(rng: np.random.Generator, size: int, melanin: float, blood: float) -> Layers:
    """Healthy skin: mottled tone, fine texture, pores, erythema, freckles and small naevi."""
    shape, s = (size, size), size / 256
    mel = melanin * (1 + 0.12 * smooth_noise(rng, shape, 24 * s))
    hb = blood * (1 + 0.3 * smooth_noise(rng, shape, 16 * s))
    shade = 1 + 0.025 * smooth_noise(rng, shape, 1) + 0.03 * smooth_noise(rng, shape, 3 * s)
    shade -= 0.25 * _spots(rng, shape, int(size * size / 300), 0.7)  # pores
    for _ in range(rng.integers(0, 4)):  # mild erythema: red like AK, but smooth and scale-free
        rho = blob_field(rng, shape, tuple(rng.uniform(0, size, 2)), rng.uniform(15, 55) * s)
        hb += rng.uniform(0.15, 0.6) * np.clip((1.4 - rho) / 0.8, 0, 1)
    n_freckles = rng.poisson(60 * s * s * np.exp(-melanin))
    mel += rng.uniform(0.4, 1.0) * _spots(rng, shape, n_freckles, rng.uniform(1.0, 2.5) * s)
    for _ in range(rng.integers(0, 3)):  # small naevi: brown and sharp like a tiny SK
        rho = blob_field(rng, shape, tuple(rng.uniform(0, size, 2)), rng.uniform(2, 6) * s, 0.1)
        mel += rng.uniform(0.8, 2.0) * np.clip((1 - rho) / 0.15, 0, 1)
    z = np.zeros(shape, np.float32)
    return Layers(mel.astype(np.float32), hb.astype(np.float32), shade.astype(np.float32), z)


def paint_ak(rng: np.random.Generator, layers: Layers, rho: np.ndarray) -> None:
    """Red/pink, ill-defined, rough patch with whitish scale flecks."""
    shape, s = rho.shape, rho.shape[0] / 256
    edge = np.clip((1.3 - rho) / 0.6, 0, 1)  # fades over a wide band across the outline
    patchy = np.clip(0.7 + 0.3 * smooth_noise(rng, shape, 6 * s), 0.3, 1.0)
    layers.blood += rng.uniform(0.45, 1.0) * edge * patchy
    fine, clusters = smooth_noise(rng, shape, 1.5 * s), smooth_noise(rng, shape, 8 * s)
    flecks = ((fine > rng.uniform(1.2, 2.2)) & (clusters > -0.3)).astype(np.float32)
    flecks = ndimage.gaussian_filter(flecks, 0.7) * (edge > 0.5) * rng.uniform(0.2, 0.5)
    layers.scale = np.maximum(layers.scale, flecks)
    layers.shade *= 1 + 0.05 * edge * smooth_noise(rng, shape, 1)


def paint_sk(rng: np.random.Generator, layers: Layers, rho: np.ndarray) -> None:
    """Brown, waxy, sharply bordered plaque with cracks, dark dots and a shadowed rim."""
    shape, s = rho.shape, rho.shape[0] / 256
    inside = np.clip((1 - rho) / 0.06, 0, 1)  # well-defined border
    pigment = rng.uniform(0.7, 2.0) * (1 + 0.25 * smooth_noise(rng, shape, 8 * s))
    cracks = ndimage.gaussian_filter(
        (np.abs(smooth_noise(rng, shape, 3 * s)) < 0.15).astype(np.float32), 0.6
    )
    dots = _spots(rng, shape, int(np.sum(rho < 1) / 60), rng.uniform(0.7, 1.4) * s)
    layers.melanin += inside * (pigment + 0.8 * cracks + 1.5 * dots)
    layers.shade *= 1 + 0.12 * inside * smooth_noise(rng, shape, 2 * s)  # verrucous
    layers.shade *= 1 - 0.25 * np.exp(-(((rho - 0.97) / 0.04) ** 2))  # raised edge
    sheen = 0.12 * inside * np.clip(smooth_noise(rng, shape, 4 * s) - 1, 0, None)  # waxy glints
    layers.scale = np.maximum(layers.scale, sheen)


def paint_hair(rng: np.random.Generator, layers: Layers, n: int) -> None:
    """Darken ``n`` thin curved strands."""
    size = layers.shade.shape[0]
    strands = np.zeros_like(layers.shade)
    for _ in range(n):
        start = rng.uniform(0, size, 2)
        mid, end = start + rng.normal(0, 0.15 * size, (2, 2)).cumsum(axis=0)
        r0, c0, r1, c1, r2, c2 = np.round([*start, *mid, *end]).astype(int).tolist()
        rr, cc = bezier_curve(r0, c0, r1, c1, r2, c2, 1.0, shape=strands.shape)
        strands[rr, cc] = rng.uniform(0.3, 0.7)
    layers.shade *= 1 - ndimage.gaussian_filter(strands, 0.6) * 1.3


def render_layers(layers: Layers) -> np.ndarray:
    """(H, W, 3) float32 reflectance in [0, 1] from the pigment and texture layers."""
    absorb = layers.melanin[..., None] * _EPS_MEL + layers.blood[..., None] * _EPS_HB
    rgb = _WHITE * np.exp(-absorb) * np.clip(layers.shade, 0.1, None)[..., None]
    alpha = np.clip(layers.scale, 0, 1)[..., None]
    return rgb * (1 - alpha) + _SCALE_RGB * alpha


def photograph(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Uneven light, vignette, colour cast, optional blur and noise -> (H, W, 3) uint8."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w) - np.float32(0.5)
    angle, slope = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.5)
    gradient = xx * float(np.cos(angle) * slope) + yy * float(np.sin(angle) * slope)
    light = 1 + gradient - float(rng.uniform(0, 0.8)) * (xx**2 + yy**2)
    cast = rng.uniform(0.85, 1.1) * (1 + rng.normal(0, 0.03, 3))  # exposure, white balance
    out = rgb * light[..., None] * cast.astype(np.float32)
    sigma = rng.uniform(0.5, 1.5)
    if rng.random() < 0.35:
        out = ndimage.gaussian_filter(out, (sigma, sigma, 0))
    out += rng.standard_normal(out.shape, np.float32) * np.float32(0.01)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_image(
    rng: np.random.Generator,
    size: int = 256,
    labels: tuple[int, ...] = (LABEL_AK, LABEL_SK),
    melanin: float = 0.5,
    blood: float = 0.3,
    hairs: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """One photo with one lesion per entry of ``labels`` (1 = AK, 2 = SK).

    Args:
        rng: the only source of randomness.
        size: side of the square image in pixels; lesion radii are 25-90 px at 256.
        labels: lesion types to place.
        melanin: skin melanin (0.3 for Fitzpatrick type I to 2.9 for type VI).
        blood: skin haemoglobin (about 0.2-0.4).
        hairs: maximum number of hair strands.

    Returns:
        (size, size, 3) uint8 RGB image and (size, size) uint8 mask (0 skin, 1 AK, 2 SK).
    """
    layers = skin_layers(rng, size, melanin, blood)
    mask, fields = place_lesions(rng, size, labels, rng.uniform(0.12, 0.28))
    for label, rho in fields:
        (paint_ak if label == LABEL_AK else paint_sk)(rng, layers, rho)
    paint_hair(rng, layers, int(rng.integers(0, hairs + 1)))
    return photograph(rng, render_layers(layers)), mask


def sample_patient(rng: np.random.Generator, index: int) -> Patient:
    """Patient ``index`` (0-based) with a Fitzpatrick type, age and skin pigment levels."""
    fitz = int(rng.choice(6, p=_FITZ_P)) + 1
    melanin = _MELANIN[fitz - 1] * rng.uniform(0.85, 1.15)
    age = int(rng.integers(45, 91))
    return Patient(f"P{index + 1:03d}", fitz, age, melanin, rng.uniform(0.2, 0.4))


def plan_labels(rng: np.random.Generator, n_images: int) -> list[tuple[int, ...]]:
    """Lesion types per image (1-3 lesions each), with at least one AK and one SK in all."""
    counts = rng.integers(1, 4, n_images)
    if counts.sum() < 2:
        counts[0] = 2
    labels = rng.integers(LABEL_AK, LABEL_SK + 1, counts.sum())
    labels[:2] = (LABEL_AK, LABEL_SK)
    rng.shuffle(labels)
    return [tuple(int(v) for v in part) for part in np.split(labels, np.cumsum(counts)[:-1])]


def write_png(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG", compress_level=1)  # fast; ~13% bigger


def generate(
    out_dir: str | Path,
    n_patients: int = 12,
    images_per_patient: int = 2,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write ``n_patients * images_per_patient`` photos, masks and ``metadata.csv``, and a
    follow-up of patient P001 (three visits with known changes) in ``followup/``.

    Patient ``i`` depends only on ``(seed, i)``, so adding patients keeps the earlier ones.
    ``metadata.csv`` is written last, so its presence marks a complete dataset.

    Args:
        out_dir: output folder (created).
        n_patients: number of patients, ``P001`` onwards.
        images_per_patient: photos per patient; together they hold at least one AK and one SK.
        size: image side in pixels (at least 64).
        seed: any int; the same seed gives byte-identical files.

    Returns:
        Path of ``metadata.csv``.
    """
    if n_patients < 1 or images_per_patient < 1 or size < 64:
        got = f"{n_patients}, {images_per_patient}, {size}"
        raise ValueError(f"need n_patients, images_per_patient >= 1 and size >= 64, got {got}")
    out, entropy = Path(out_dir), seed % 2**64
    rows = []
    for p in range(n_patients):
        prng = np.random.default_rng([entropy, p])
        patient = sample_patient(prng, p)
        for k, labels in enumerate(plan_labels(prng, images_per_patient), start=1):
            region = REGIONS[int(prng.integers(len(REGIONS)))]
            irng = np.random.default_rng([entropy, p, k])
            image, mask = make_image(irng, size, labels, patient.melanin, patient.blood,
                                     _HAIRS[region])  # fmt: skip
            name = f"{patient.patient_id}_{k}"
            write_png(out / "images" / f"{name}.png", image)
            write_png(out / "masks" / f"{name}.png", mask)
            diagnostic = "+".join(LABEL_NAMES[v] for v in sorted(set(labels)))
            rows.append((f"images/{name}.png", f"masks/{name}.png", patient.patient_id, name,
                         diagnostic, patient.fitzpatrick, patient.age, region))  # fmt: skip
    from skintl.data.followup import generate_followup

    generate_followup(out / "followup", sample_patient(np.random.default_rng([entropy, 0]), 0),
                      size, seed)  # fmt: skip
    meta = out / "metadata.csv"
    with atomic_path(meta) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerows([METADATA_COLUMNS, *rows])
    log.info("synthetic data: %d images of %d patients in %s", len(rows), n_patients, out)
    return meta
