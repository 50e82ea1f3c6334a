"""Texture and colour descriptors of RGB patches (the classical baselines' features).

Spyridonos et al., "Automatic discrimination of actinic keratoses from clinical photographs",
Comput Biol Med 88 (2017): uniform rotation-invariant LBP histograms of the Y and I channels of
YIQ on 50x50 ROIs. Every transformer takes uint8 RGB patches ``(N, H, W, 3)`` and returns
``(N, d)`` float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from skimage.color import rgb2hsv, rgb2lab, rgb2yiq
from skimage.feature import local_binary_pattern
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

_YIQ = ("Y", "I", "Q")
# rgb2yiq is linear: read its 3x3 matrix off the unit vectors, so that only the requested
# channels are computed (rgb @ _RGB2YIQ equals rgb2yiq to 1e-15).
_RGB2YIQ = rgb2yiq(np.eye(3)[None])[0]  # row i: YIQ of unit primary i
# Exact range of each YIQ channel over the RGB cube: sum of the negative / positive weights.
_YIQ_LOW, _YIQ_HIGH = np.minimum(_RGB2YIQ, 0).sum(axis=0), np.maximum(_RGB2YIQ, 0).sum(axis=0)
_BATCH = 512  # patches per vectorised chunk: bounds float64 temporaries to ~100 MB at 100x100


def _check_patches(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[-1] != 3:
        raise ValueError(f"expected RGB patches of shape (N, H, W, 3), got {X.shape}")
    if X.dtype != np.uint8:
        raise TypeError(f"expected uint8 RGB patches, got dtype {X.dtype}")
    return X


def _to_uint8(channel: np.ndarray, low: float, high: float, rescale: str) -> np.ndarray:
    """Map a float channel ``(N, H, W)`` linearly onto 0..255."""
    if rescale == "patch":
        low_p = channel.min(axis=(1, 2), keepdims=True)
        span = channel.max(axis=(1, 2), keepdims=True) - low_p
        scaled = (channel - low_p) / np.where(span > 0, span, 1.0)
    else:
        scaled = (channel - low) / (high - low)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def lbp_histograms(gray: np.ndarray, P: int, R: float) -> np.ndarray:
    """Normalised uniform LBP histograms of a stack of single-channel patches.

    The patches are stacked into one tall image so that scikit-image runs once per chunk. Only
    interior pixels (at least ``ceil(R)`` from every patch border) are counted: their circular
    neighbourhood lies inside their own patch, so the stacking is exact, and scikit-image's
    zero padding at the border cannot create spurious edges.

    Args:
        gray: ``(N, H, W)`` uint8.
        P: number of circular neighbours.
        R: radius in pixels.

    Returns:
        ``(N, P + 2)`` histograms, each summing to 1; bin ``i <= P`` counts uniform patterns with
        ``i`` neighbours >= the centre, bin ``P + 1`` the non-uniform ones.
    """
    n, h, w = gray.shape
    b = math.ceil(R)
    if h <= 2 * b or w <= 2 * b:
        raise ValueError(f"patches of {h}x{w} have no interior pixels for LBP radius {R}")
    codes = local_binary_pattern(gray.reshape(n * h, w), P, R, method="uniform")
    codes = codes.reshape(n, h, w)[:, b : h - b, b : w - b].reshape(n, -1).astype(np.int64)
    offsets = np.arange(n)[:, None] * (P + 2)
    hist = np.bincount((codes + offsets).ravel(), minlength=n * (P + 2)).reshape(n, P + 2)
    return hist / codes.shape[1]


class LBPYIQFeatures(TransformerMixin, BaseEstimator):
    """Uniform LBP histograms of YIQ channels (Spyridonos et al. 2017).

    RGB is converted to YIQ (``skimage.color.rgb2yiq``); each requested channel is mapped
    linearly onto 0..255 and rounded to uint8 before LBP, because LBP on floats is sensitive to
    rounding noise between equal neighbours. With ``rescale="global"`` (default) the fixed range
    is the channel's exact range over the RGB cube (I is signed, about +-0.596), so equal
    intensity steps mean the same in every patch and the flat I channel of skin is not stretched
    into noise; ``rescale="patch"`` stretches each patch's own min..max instead (more grey levels
    for low-contrast channels, at the cost of amplifying noise in flat patches).

    Args:
        P: number of circular neighbours.
        R: radius in pixels.
        channels: YIQ channels to describe, in output order.
        rescale: ``"global"`` or ``"patch"``.
    """

    def __init__(
        self,
        P: int = 8,
        R: float = 1,
        channels: Sequence[str] = ("Y", "I"),
        rescale: str = "global",
    ) -> None:
        self.P = P
        self.R = R
        self.channels = channels
        self.rescale = rescale

    def _validate(self) -> None:
        bad = [c for c in self.channels if c not in _YIQ]
        if bad or not self.channels:
            raise ValueError(f"channels must be a non-empty subset of Y, I, Q; got {self.channels}")
        if self.rescale not in ("global", "patch"):
            raise ValueError(f"rescale must be 'global' or 'patch', got {self.rescale!r}")

    def fit(self, X: np.ndarray, y: object = None) -> LBPYIQFeatures:
        """Validate parameters and input; nothing is learned."""
        self._validate()
        X = _check_patches(X)
        self.patch_shape_ = X.shape[1:3]
        self.n_features_out_ = len(self.channels) * (self.P + 2)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Patches ``(N, H, W, 3)`` uint8 -> histograms ``(N, len(channels) * (P + 2))``."""
        check_is_fitted(self, "n_features_out_")
        X = _check_patches(X)
        chunks = [self._transform_chunk(X[i : i + _BATCH]) for i in range(0, len(X), _BATCH)]
        return np.concatenate(chunks) if chunks else np.empty((0, self.n_features_out_))

    def _transform_chunk(self, X: np.ndarray) -> np.ndarray:
        rgb = X / 255.0  # (n, H, W, 3), as rgb2yiq scales uint8
        feats = []
        for name in self.channels:
            c = _YIQ.index(name)
            gray = _to_uint8(rgb @ _RGB2YIQ[:, c], _YIQ_LOW[c], _YIQ_HIGH[c], self.rescale)
            feats.append(lbp_histograms(gray, self.P, self.R))
        return np.concatenate(feats, axis=1)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array([f"lbp_{c}_{i}" for c in self.channels for i in range(self.P + 2)])


_SPACES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"lab": rgb2lab, "hsv": rgb2hsv}


class ColourLBPFeatures(TransformerMixin, BaseEstimator):
    """Colour statistics in RGB and a perceptual space, concatenated with LBP-YIQ histograms.

    Per channel: mean, standard deviation and the requested percentiles, first of RGB (scaled to
    0..1), then of ``colour_space`` (``"lab"``: CIE L*a*b*, D65; ``"hsv"``: note that hue is
    circular, so its mean and percentiles are only meaningful away from red).

    Args:
        P, R, channels, rescale: as in :class:`LBPYIQFeatures`.
        colour_space: ``"lab"`` or ``"hsv"``.
        percentiles: percentiles (0..100) of each channel.
    """

    def __init__(
        self,
        P: int = 8,
        R: float = 1,
        channels: Sequence[str] = ("Y", "I"),
        rescale: str = "global",
        colour_space: str = "lab",
        percentiles: Sequence[float] = (10, 50, 90),
    ) -> None:
        self.P = P
        self.R = R
        self.channels = channels
        self.rescale = rescale
        self.colour_space = colour_space
        self.percentiles = percentiles

    def _lbp(self) -> LBPYIQFeatures:
        return LBPYIQFeatures(P=self.P, R=self.R, channels=self.channels, rescale=self.rescale)

    def fit(self, X: np.ndarray, y: object = None) -> ColourLBPFeatures:
        """Validate parameters and input; nothing is learned."""
        if self.colour_space not in _SPACES:
            raise ValueError(
                f"colour_space must be one of {sorted(_SPACES)}, got {self.colour_space!r}"
            )
        self.lbp_ = self._lbp().fit(X)
        self.n_colour_features_ = 2 * 3 * (2 + len(self.percentiles))
        self.n_features_out_ = self.n_colour_features_ + self.lbp_.n_features_out_
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Patches ``(N, H, W, 3)`` uint8 -> ``(N, n_colour_features_ + LBP bins)``."""
        check_is_fitted(self, "n_features_out_")
        X = _check_patches(X)
        colour = [self._colour_chunk(X[i : i + _BATCH]) for i in range(0, len(X), _BATCH)]
        colour_arr = np.concatenate(colour) if colour else np.empty((0, self.n_colour_features_))
        return np.concatenate([colour_arr, self.lbp_.transform(X)], axis=1)

    def _colour_chunk(self, X: np.ndarray) -> np.ndarray:
        rgb = X.astype(np.float32) / 255  # float32 halves the cost of the colour conversion
        both = np.concatenate([rgb, _SPACES[self.colour_space](rgb)], axis=-1)
        flat = both.reshape(len(X), -1, 6)  # (n, H*W, 6): R, G, B, then the perceptual space
        pct = np.percentile(flat, list(self.percentiles), axis=1)  # (n_pct, n, 6)
        return np.concatenate([flat.mean(axis=1), flat.std(axis=1), *pct], axis=1)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        stats = ["mean", "std", *[f"p{p:g}" for p in self.percentiles]]
        space = self.colour_space
        chans = [f"rgb_{{}}_{c}" for c in "RGB"] + [f"{space}_{{}}_{c}" for c in space.upper()]
        names = [ch.format(stat) for stat in stats for ch in chans]
        return np.array(names + list(self.lbp_.get_feature_names_out()))
