"""The cell head: a classifier of every skin cell of the training photos' feature maps.

A patch head learns from a few sampled patches per photo and class, often with balanced class
weights, and then paints every window of photos where the lesion is a tenth of the skin: it is
trained on another distribution than the one it paints. The cell head learns from what it
paints. Every cell of the layer's map of a training photo (``stride x stride`` px, computed by
:func:`skintl.features.dense.feature_map`, the function scans use) whose block is at least half
skin or doctor's region is a candidate; it is labelled from the mask when its block lies wholly
in one lesion class (that class) or holds no lesion pixel (healthy), and left out when it
straddles an outline (a *boundary* cell). The classifier is fitted on every labelled cell with
the classes' natural frequencies (no class weights). A scan classifies every cell of the photo's
map and paints each skin pixel with its cell's probabilities.

Optionally a decision threshold per lesion class is chosen on the TRAINING patients only: they
are split into ``inner_folds`` patient groups; each group's photos get probabilities from a head
fitted on the other groups, and the threshold on the class probability that maximises the mean
cell-level Dice (``dice``) or minimises the mean absolute burden error (``burden``) over those
photos is kept. The scanned photo's patient is never among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skintl.labels import HEALTHY

#: version of the cell labelling rule above; part of the cell table's fingerprint
CELL_RULE = "cells-half-domain-pure-blocks-v1"
#: candidate thresholds on a lesion class's probability
THRESHOLDS = np.round(np.arange(0.01, 0.991, 0.01), 2)
#: version of the threshold choice (candidates, cell-level scores, lowest of ties); recorded in
#: cell bundles and in the scan stage's fingerprint of them
THRESHOLD_RULE = "0.01-0.99-step-0.01-cell-level-lowest-tie-v1"


@dataclass
class CellGrid:
    """Labels of one photo's feature-map cells, all (h, w) with h = ceil(H / stride).

    Attributes:
        domain: bool, the block is at least half skin or doctor's region (cells a scan paints).
        label: training class index into the study's classes, -1 for boundary and off-domain
            cells.
        doctor: lesion class index covering at least half the block, -1 for none (the doctor's
            map at cell resolution, for choosing thresholds).
    """

    domain: np.ndarray
    label: np.ndarray
    doctor: np.ndarray


def _block_sums(a: np.ndarray, s: int) -> np.ndarray:
    """(H, W) -> (ceil(H / s), ceil(W / s)) sums over ``s x s`` blocks (zero beyond the edge)."""
    h, w = math.ceil(a.shape[0] / s), math.ceil(a.shape[1] / s)
    padded = np.zeros((h * s, w * s), np.int64)
    padded[: a.shape[0], : a.shape[1]] = a
    return padded.reshape(h, s, w, s).sum(axis=(1, 3))


def cell_grid(label_map: np.ndarray, skin: np.ndarray, stride: int, classes: list[str]) -> CellGrid:
    """Label the cells of one photo (the rule of the module docstring).

    Args:
        label_map: (H, W) class index into ``classes`` of lesion pixels, -1 elsewhere.
        skin: (H, W) bool skin mask; stride: px per cell.
    """
    inside = _block_sums(np.ones(label_map.shape, bool), stride)
    lesion = label_map >= 0
    domain = 2 * _block_sums(skin | lesion, stride) >= inside
    label = np.where(domain & (_block_sums(lesion, stride) == 0), classes.index(HEALTHY), -1)
    doctor = np.full(inside.shape, -1)
    for c in (i for i, name in enumerate(classes) if name != HEALTHY):
        n = _block_sums(label_map == c, stride)
        label[domain & (n == inside)] = c
        doctor[2 * n >= inside] = c  # classes do not overlap: at most one has half a block
    return CellGrid(domain, label, np.where(domain, doctor, -1))


def target_class(doctor: np.ndarray, classes: list[str]) -> str | None:
    """The lesion class a photo's scan is scored on: the first of ``classes`` present."""
    present = set(np.unique(doctor[doctor >= 0]).tolist())
    return next((c for i, c in enumerate(classes) if i in present and c != HEALTHY), None)


@dataclass
class CellTable:
    """Every domain cell of the study's photos.

    Attributes:
        X: (N, C) float32 features; label, doctor: (N,) as in :class:`CellGrid`;
        photo: (N,) photo index; patients: (P,) patient of each photo; targets: (P,) the
        photo's target class ("" without a lesion).
    """

    X: np.ndarray
    label: np.ndarray
    doctor: np.ndarray
    photo: np.ndarray
    patients: np.ndarray
    targets: np.ndarray

    def rows_of(self, patients: list[str] | np.ndarray) -> np.ndarray:
        """(N,) bool: cells of the photos of ``patients``."""
        return np.isin(self.patients[self.photo], np.asarray(patients, dtype=str))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("X", "label", "doctor", "photo", "patients",
                                              "targets")}  # fmt: skip


def photo_cells(fmap: np.ndarray, grid: CellGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, h, w) feature map and its grid -> (features (n, C), label (n,), doctor (n,)) of the
    domain cells, in raster order."""
    if fmap.shape[1:] != grid.domain.shape:
        raise ValueError(f"feature map {fmap.shape[1:]} and cell grid {grid.domain.shape} differ")
    cy, cx = np.nonzero(grid.domain)
    return fmap[:, cy, cx].T.astype(np.float32), grid.label[cy, cx], grid.doctor[cy, cx]


def training_rows(
    table: CellTable, patients: list[str], max_per_photo: int | None, seed: int
) -> np.ndarray:
    """Indices of the labelled cells of ``patients``' photos, at most ``max_per_photo`` per
    photo (a uniform sample, which keeps the natural class frequencies)."""
    rows = np.flatnonzero(table.rows_of(patients) & (table.label >= 0))
    if max_per_photo is None:
        return rows
    rng = np.random.default_rng(seed)
    keep = []
    for p in np.unique(table.photo[rows]):
        mine = rows[table.photo[rows] == p]
        keep.append(rng.choice(mine, max_per_photo, replace=False) if len(mine) > max_per_photo
                    else mine)  # fmt: skip
    return np.sort(np.concatenate(keep)) if keep else rows


def cell_dice(hit: np.ndarray, doctor: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Dice per photo of (T, n) predicted cells against (n,) doctor cells, as (T, P')."""
    ids, inv = np.unique(photo, return_inverse=True)
    out = np.empty((hit.shape[0], len(ids)))
    d = np.bincount(inv, weights=doctor, minlength=len(ids))
    for t in range(hit.shape[0]):
        p = np.bincount(inv, weights=hit[t], minlength=len(ids))
        both = np.bincount(inv, weights=hit[t] & doctor, minlength=len(ids))
        out[t] = np.where(p + d > 0, 2 * both / np.maximum(p + d, 1), 1.0)
    return out


def cell_burden_error(hit: np.ndarray, doctor: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Absolute burden error per photo (% of domain cells) of (T, n) predicted cells, (T, P')."""
    ids, inv = np.unique(photo, return_inverse=True)
    n = np.bincount(inv, minlength=len(ids))
    d = np.bincount(inv, weights=doctor, minlength=len(ids))
    p = np.stack([np.bincount(inv, weights=h, minlength=len(ids)) for h in hit])
    return np.asarray(100 * np.abs(p - d) / n)


def best_threshold(
    prob: np.ndarray, doctor: np.ndarray, photo: np.ndarray, objective: str
) -> float:
    """The threshold of :data:`THRESHOLDS` with the best mean per-photo score.

    Args:
        prob: (n,) one lesion class's probability of every domain cell of the photos scored;
        doctor: (n,) bool, the doctor's cells of that class; photo: (n,) photo of each cell;
        objective: ``dice`` (highest mean Dice) or ``burden`` (lowest mean absolute error).
    """
    hit = prob[None, :] >= THRESHOLDS[:, None]  # (T, n)
    if objective == "dice":
        score = cell_dice(hit, doctor, photo).mean(axis=1)
    elif objective == "burden":
        score = -cell_burden_error(hit, doctor, photo).mean(axis=1)
    else:
        raise ValueError(f"unknown threshold objective {objective!r}; valid: dice, burden")
    return float(THRESHOLDS[int(np.argmax(score))])  # ties: the lowest threshold


def inner_folds(patients: list[str], n: int, seed: int) -> list[list[str]]:
    """``n`` (at most one per patient) groups of the training patients, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(sorted(set(patients)))
    k = min(n, len(order))
    return [sorted(order[i::k].tolist()) for i in range(k)]


def choose_thresholds(
    table: CellTable,
    patients: list[str],
    classes: list[str],
    fit: Any,
    objective: str,
    n_inner: int,
    max_per_photo: int | None,
    seed: int,
) -> dict[str, float]:
    """A threshold per lesion class from an inner patient split of ``patients`` only.

    Args:
        table: the study's cells (only the rows of ``patients`` are read).
        fit: ``(X, y, groups) -> Head`` fitting the classifier on cells.

    Returns:
        {lesion class: threshold} for the classes some held-out training photo targets.
    """
    oof_prob: list[np.ndarray] = []
    oof_rows: list[np.ndarray] = []
    for held in inner_folds(patients, n_inner, seed):
        rest = sorted(set(patients) - set(held))
        train = training_rows(table, rest, max_per_photo, seed)
        if not rest or len(np.unique(table.label[train])) < len(classes):
            continue  # a fold without every class cannot fit the head
        y = np.asarray(classes)[table.label[train]]
        head = fit(table.X[train], y, table.patients[table.photo[train]])
        rows = np.flatnonzero(table.rows_of(held))
        order = [head.classes.index(c) for c in classes]  # the head's columns are sorted
        oof_prob.append(head.predict_proba(table.X[rows])[:, order])
        oof_rows.append(rows)
    if not oof_rows:
        return {}
    rows, prob = np.concatenate(oof_rows), np.concatenate(oof_prob)
    out = {}
    for k, c in enumerate(classes):
        mine = table.targets[table.photo[rows]] == c
        if c != HEALTHY and mine.any():
            doctor = table.doctor[rows[mine]] == k
            out[c] = best_threshold(prob[mine, k], doctor, table.photo[rows[mine]], objective)
    return out
