"""Registration of a later photo onto an earlier one of the same skin (pure arrays in and out).

SIFT keypoints (Lowe 2004; or the faster ORB, Rublee et al. 2011) on contrast-equalised grey images
at a working size, cross-checked descriptor matches with Lowe's ratio test, then RANSAC
(``skimage.measure.ransac``) fits a projective transform (a homography: the skin is taken as a
plane). When the homography is implausible, or too few matches agree with it, a similarity transform
(rotation, zoom, shift) is fitted instead. A fit is *implausible* when its zoom is outside [1/2, 2],
it mirrors the photo, its two axes differ in length by more than :data:`MAX_ANISOTROPY` or the tilt
moves the far corner's scale by more than :data:`MAX_PERSPECTIVE`. A pair with no plausible fit of
at least :data:`MIN_INLIERS` inliers is refused (:class:`RegistrationError`): nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skintl.names import DETECTORS as DETECTORS  # SIFT or ORB keypoints

#: fewest keypoint matches that must agree with the fit
MIN_INLIERS = 15
#: the fit's zoom (after px per before px) must lie in [1 / MAX_ZOOM, MAX_ZOOM]
MAX_ZOOM = 2.0
#: largest ratio of the two singular values of the fit's linear part (shear, squash)
MAX_ANISOTROPY = 1.5
#: largest change of the projective denominator across the photo (tilt)
MAX_PERSPECTIVE = 0.25
#: working size of registration: the longer side is brought into [WORK_MIN, WORK_MAX] px (ORB
#: finds too few keypoints on small photos: a 256 px photo gets a quarter of the matches)
WORK_MIN, WORK_MAX = 512, 1024
#: a match agrees with the fit when it lands within this many working px
RESIDUAL_PX = 3.0


class RegistrationError(ValueError):
    """A pair of photos that cannot be registered; the message says why."""


@dataclass(frozen=True)
class Registration:
    """A fit mapping AFTER's pixels onto BEFORE's.

    Attributes:
        matrix: (3, 3) homogeneous transform, AFTER px (x, y, 1) -> BEFORE px (original sizes).
        kind: ``"projective"`` or ``"similarity"``.
        matches: cross-checked keypoint matches; inliers: of them, those agreeing with the fit.
        error_px: mean reprojection error of the inliers in BEFORE's original px.
        zoom: sqrt |det| of the linear part (BEFORE px per AFTER px).
    """

    matrix: np.ndarray
    kind: str
    matches: int
    inliers: int
    error_px: float
    zoom: float


def _grey(photo: np.ndarray, side: int | None = None) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 -> (equalised grey image at working size, working px per original px);
    the working size's longer side is ``side``, or the photo's within [WORK_MIN, WORK_MAX]."""
    from skimage.color import rgb2gray
    from skimage.exposure import equalize_adapthist

    from skintl.scan.image import resize

    long = max(photo.shape[:2])
    f = (side or min(max(long, WORK_MIN), WORK_MAX)) / long
    shape = (max(1, round(photo.shape[0] * f)), max(1, round(photo.shape[1] * f)))
    return equalize_adapthist(rgb2gray(resize(photo, shape))), f


def _keypoints(grey: np.ndarray, detector: str) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) keypoints (x, y) and (K, D) descriptors; none on a featureless image."""
    from skimage.feature import ORB, SIFT

    det = SIFT(upsampling=1) if detector == "sift" else ORB(n_keypoints=2000, fast_threshold=0.05)
    try:
        det.detect_and_extract(grey)
    except RuntimeError:  # skimage raises when no keypoint is found
        return np.zeros((0, 2)), np.zeros((0, 1))
    keys, desc = np.asarray(det.keypoints), np.asarray(det.descriptors)
    return keys[:, ::-1].astype(np.float64), desc


def implausible(matrix: np.ndarray, shape: tuple[int, int]) -> str | None:
    """Why a transform (AFTER px -> BEFORE px) of a photo of ``shape`` is implausible, or None."""
    m = matrix / matrix[2, 2]
    lin = m[:2, :2]
    det = float(np.linalg.det(lin))
    if det <= 0:
        return "the fit mirrors the photo"
    zoom = float(np.sqrt(det))
    if not 1 / MAX_ZOOM <= zoom <= MAX_ZOOM:
        return f"the fit zooms by {zoom:.2f} (outside [{1 / MAX_ZOOM:g}, {MAX_ZOOM:g}])"
    sv = np.linalg.svd(lin, compute_uv=False)
    if sv[0] / sv[1] > MAX_ANISOTROPY:
        return f"the fit shears or squashes the photo ({sv[0] / sv[1]:.2f}:1)"
    h, w = shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float)
    denom = corners @ m[2]
    if denom.min() <= 0 or denom.max() / denom.min() > 1 + MAX_PERSPECTIVE:
        return "the fit tilts the photo implausibly (strong perspective)"
    return None


def _fit(src: np.ndarray, dst: np.ndarray, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC fit of ``kind`` mapping src (K, 2) to dst (K, 2) -> (3x3 matrix, (K,) inliers)."""
    from skimage.measure import ransac
    from skimage.transform import ProjectiveTransform, SimilarityTransform

    model_class = ProjectiveTransform if kind == "projective" else SimilarityTransform
    need = 4 if kind == "projective" else 2
    if len(src) < max(need, MIN_INLIERS):
        return np.eye(3), np.zeros(len(src), bool)
    model, inliers = ransac((src, dst), model_class, min_samples=need,
                            residual_threshold=RESIDUAL_PX, max_trials=2000,
                            rng=np.random.default_rng(seed))  # fmt: skip
    if model is None or inliers is None:
        return np.eye(3), np.zeros(len(src), bool)
    return np.asarray(model.params, float), np.asarray(inliers, bool)


def register(
    before: np.ndarray,
    after: np.ndarray,
    detector: str = "sift",
    side: int | None = None,
    seed: int = 0,
) -> Registration:
    """Fit the transform taking AFTER (H', W', 3) uint8 onto BEFORE (H, W, 3) uint8.

    Args:
        detector: ``"sift"`` or ``"orb"``; side: the working size's longer side (default: the
            photo's, brought into [WORK_MIN, WORK_MAX]); seed: RANSAC's.

    Raises:
        RegistrationError: too few agreeing matches, or no plausible fit (module docstring).
    """
    from skimage.feature import match_descriptors

    gb, fb = _grey(before, side)
    ga, fa = _grey(after, side)
    kb, db = _keypoints(gb, detector)
    ka, da = _keypoints(ga, detector)
    if len(kb) < MIN_INLIERS or len(ka) < MIN_INLIERS:
        raise RegistrationError(f"too few keypoints ({len(kb)} and {len(ka)}) to match")
    pairs = match_descriptors(da, db, cross_check=True, max_ratio=0.8)
    src, dst = ka[pairs[:, 0]], kb[pairs[:, 1]]
    # working px of AFTER -> working px of BEFORE; back to original px at the end
    to_orig = np.diag([1 / fb, 1 / fb, 1.0])
    reasons = []
    for kind in ("projective", "similarity"):
        m, inl = _fit(src, dst, kind, seed)
        if inl.sum() < MIN_INLIERS:
            reasons.append(f"{kind}: {int(inl.sum())} of {len(src)} matches agree "
                           f"(at least {MIN_INLIERS} needed)")  # fmt: skip
            continue
        matrix = to_orig @ m @ np.diag([fa, fa, 1.0])
        matrix /= matrix[2, 2]
        why = implausible(matrix, after.shape[:2])
        if why:
            reasons.append(f"{kind}: {why}")
            continue
        res = _residuals(m, src[inl], dst[inl]) / fb
        zoom = float(np.sqrt(np.linalg.det(matrix[:2, :2])))
        return Registration(matrix, kind, len(src), int(inl.sum()), float(res.mean()), zoom)
    raise RegistrationError("cannot register the photos: " + "; ".join(reasons))


def _residuals(m: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(K,) distances between ``m`` applied to src (K, 2) and dst (K, 2)."""
    p = np.c_[src, np.ones(len(src))] @ m.T
    return np.asarray(np.hypot(*(p[:, :2] / p[:, 2:] - dst).T))


def apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(K, 2) points (x, y) through a (3, 3) homogeneous transform -> (K, 2)."""
    p = np.c_[xy, np.ones(len(xy))] @ matrix.T
    return np.asarray(p[:, :2] / p[:, 2:])
