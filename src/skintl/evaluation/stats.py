"""Statistics across patients: patient bootstrap CIs, Friedman + Holm-Wilcoxon, CD diagrams.

Blocks (rows of a score table) are patients or folds; configurations (columns) are names such
as ``"resnet50/layer2/mlp"``. Tests follow Demšar, "Statistical comparisons of classifiers over
multiple data sets", JMLR 7 (2006): Friedman, then pairwise Wilcoxon signed-rank tests with
Holm's correction (Benavoli et al., JMLR 17 (2016), recommend these over mean-rank post-hocs);
the Nemenyi critical difference is given for CD diagrams.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from skintl.io import atomic_path

log = logging.getLogger(__name__)

PROB_PREFIX = "prob_"


@runtime_checkable
class WeightedMetric(Protocol):
    """A metric on a predictions table that can also score row-weighted copies of it fast.

    ``metric.weighted(df)`` precomputes what does not depend on the resample and returns
    ``score(w)``, where ``w`` ``(N,)`` counts how often each row is drawn; ``score(w)`` equals
    the metric on the table with row ``i`` repeated ``w[i]`` times.
    """

    def __call__(self, df: pd.DataFrame) -> float: ...

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]: ...


class BalancedAccuracy:
    """Mean recall over the classes present in ``y_true`` (as sklearn's balanced accuracy)."""

    def __call__(self, df: pd.DataFrame) -> float:
        return self.weighted(df)(np.ones(len(df)))

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        labels, codes = np.unique(np.concatenate([df["y_true"], df["y_pred"]]), return_inverse=True)
        k, n = len(labels), len(df)
        cell = codes[:n] * k + codes[n:]  # confusion-matrix cell of each row

        def score(w: np.ndarray) -> float:
            cm = np.bincount(cell, weights=w, minlength=k * k).reshape(k, k)
            support = cm.sum(axis=1)
            present = support > 0
            return float(np.mean(np.diag(cm)[present] / support[present]))

        return score


class MacroAUC:
    """One-vs-rest ROC AUC averaged over classes (sklearn's ``multi_class="ovr"``, macro).

    Classes come from the ``prob_<class>`` columns. In a resample where a class has no positive
    or no negative row its AUC is undefined and the average runs over the remaining classes.
    """

    def __call__(self, df: pd.DataFrame) -> float:
        return self.weighted(df)(np.ones(len(df)))

    def weighted(self, df: pd.DataFrame) -> Callable[[np.ndarray], float]:
        cols = [c for c in df.columns if str(c).startswith(PROB_PREFIX)]
        if not cols:
            raise ValueError(f"no {PROB_PREFIX}<class> columns in {list(df.columns)}")
        y = df["y_true"].to_numpy()
        parts = []
        for col in cols:
            # Sort once; tied scores share a group so ties count one half (Mann-Whitney U).
            s = df[col].to_numpy(dtype=float)
            _, tie_group = np.unique(s, return_inverse=True)
            parts.append((y == col[len(PROB_PREFIX) :], tie_group, int(tie_group.max()) + 1))

        def score(w: np.ndarray) -> float:
            aucs = []
            for pos, group, n_groups in parts:
                wp = np.bincount(group, weights=w * pos, minlength=n_groups)
                wn = np.bincount(group, weights=w * ~pos, minlength=n_groups)
                n_pos, n_neg = wp.sum(), wn.sum()
                if n_pos > 0 and n_neg > 0:
                    below = np.cumsum(wn) - wn  # negatives strictly below each score
                    aucs.append(float(wp @ (below + 0.5 * wn)) / (n_pos * n_neg))
            return float(np.mean(aucs)) if aucs else math.nan

        return score


balanced_accuracy = BalancedAccuracy()
macro_auc = MacroAUC()


def group_resamples(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row weights of ``n_boot`` bootstrap resamples of groups (patients), drawn with replacement.

    Args:
        groups: ``(N,)`` group (patient) of each row.

    Yields:
        ``(N,)`` float weights: each row's count is how often its group was drawn, so every row
        of a patient drawn ``k`` times weighs ``k`` (as many draws as there are groups).
    """
    _, group = np.unique(groups, return_inverse=True)
    n_groups = int(group.max()) + 1
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        draws = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        yield draws[group].astype(float)


def bootstrap_ci(
    df: pd.DataFrame,
    metric_fn: Callable[[pd.DataFrame], float],
    group_col: str = "patient_id",
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile CI of a metric by resampling PATIENTS (groups) with replacement.

    Each resample draws as many patients as there are, with replacement, and recomputes the
    metric on the pooled rows of the drawn patients (a patient drawn twice contributes all its
    rows twice). Patches of one patient are correlated, so resampling patches would give
    intervals that are far too narrow.

    Args:
        df: one row per prediction, with ``group_col`` and whatever ``metric_fn`` reads (for the
            helpers: ``y_true``, ``y_pred``, ``prob_<class>``...).
        metric_fn: table -> float, e.g. :data:`balanced_accuracy` or :data:`macro_auc`; a
            :class:`WeightedMetric` is scored from row weights without copying the table.
        group_col: the resampling unit.
        n_boot: number of resamples.
        alpha: 1 - coverage.
        seed: seed of the resampling.

    Returns:
        ``(estimate, low, high)``: the metric on ``df`` and the percentile interval.
    """
    if len(df) == 0:
        raise ValueError("bootstrap_ci needs a non-empty table")
    n_groups = df[group_col].nunique()
    if n_groups < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 {group_col} values, got {n_groups}")
    if isinstance(metric_fn, WeightedMetric):
        score = metric_fn.weighted(df)
    else:
        rows = np.arange(len(df))

        def score(w: np.ndarray) -> float:
            return metric_fn(df.iloc[np.repeat(rows, w.astype(np.int64))])

    resamples = group_resamples(df[group_col].to_numpy(), n_boot, seed)
    boot = np.array([score(w) for w in resamples])
    n_nan = int(np.isnan(boot).sum())
    if n_nan == n_boot:
        raise ValueError("the metric is undefined on every resample")
    if n_nan:
        log.warning("metric undefined on %d of %d resamples; they are ignored", n_nan, n_boot)
    low, high = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(metric_fn(df)), float(low), float(high)


@dataclass(frozen=True)
class PairedResult:
    """Wilcoxon signed-rank test of two configurations over the same blocks."""

    statistic: float
    p_value: float
    median_difference: float  # median over blocks of a - b
    n_blocks: int


def paired_test(
    a: pd.Series | np.ndarray, b: pd.Series | np.ndarray, zero_method: str = "wilcox"
) -> PairedResult:
    """Two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) across blocks.

    Args:
        a, b: ``(N,)`` scores per block; two Series are aligned on their index first.
        zero_method: how zero differences are treated, as in scipy.

    Raises:
        ValueError: on missing values, or when every difference is zero (no test possible).
    """
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        a, b = a.align(b, join="outer")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"a and b must be 1-D of equal length, got {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("paired_test needs a score for both configurations in every block")
    diff = x - y
    if np.all(diff == 0):
        raise ValueError("all paired differences are zero: the configurations tie in every block")
    res = stats.wilcoxon(x, y, zero_method=zero_method)
    return PairedResult(float(res.statistic), float(res.pvalue), float(np.median(diff)), len(x))


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test, mean ranks and Holm-corrected pairwise Wilcoxon tests."""

    statistic: float
    p_value: float
    mean_ranks: pd.Series  # configuration -> mean rank, best (1) first
    medians: pd.Series  # configuration -> median score over blocks, in mean-rank order
    pairwise: pd.DataFrame  # a, b, median_diff, statistic, p, p_holm, significant
    n_blocks: int
    alpha: float
    critical_difference: float  # Nemenyi CD on the mean-rank scale

    @property
    def summary(self) -> str:
        """Compact ranked summary: test line, one line per configuration, significant pairs."""
        lines = [
            f"Friedman chi2={self.statistic:.3f}, p={self.p_value:.3g} "
            f"({len(self.mean_ranks)} configurations, {self.n_blocks} blocks); "
            f"Nemenyi CD={self.critical_difference:.3f} at alpha={self.alpha:g}",
            f"{'rank':>4}  {'mean rank':>9}  {'median':>8}  configuration",
        ]
        rows = zip(self.mean_ranks.items(), self.medians, strict=True)
        for i, ((name, rank), median) in enumerate(rows, 1):
            lines.append(f"{i:>4}  {rank:>9.2f}  {median:>8.4f}  {name}")
        sig = self.pairwise[self.pairwise["significant"]]
        lines.append(f"Holm-Wilcoxon significant pairs (better > worse): {len(sig)}")
        for a, b, p in sig[["a", "b", "p_holm"]].itertuples(index=False):
            lines.append(f"  {a} > {b} (p_holm={p:.3g})")
        return "\n".join(lines)


def _check_scores(scores: pd.DataFrame) -> pd.DataFrame:
    if scores.shape[1] < 3:
        raise ValueError(
            f"Friedman needs at least 3 configurations, got {scores.shape[1]} "
            f"({', '.join(map(str, scores.columns))}); use paired_test for two"
        )
    if scores.columns.duplicated().any():
        raise ValueError(f"duplicate configuration names: {list(scores.columns)}")
    incomplete = scores.index[scores.isna().any(axis=1)]
    if len(incomplete):
        raise ValueError(f"blocks with missing scores (drop or fill them): {list(incomplete)}")
    if len(scores) < 2:
        raise ValueError(f"Friedman needs at least 2 blocks, got {len(scores)}")
    if (scores.nunique(axis=1) == 1).all():
        raise ValueError("all configurations tie in every block: the Friedman test is undefined")
    return scores.astype(float)


def nemenyi_cd(n_configs: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks (Demšar 2006, eq. for CD).

    ``q_alpha`` is the studentized range quantile for ``k`` means with infinite degrees of
    freedom, divided by sqrt(2).
    """
    k = n_configs
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n_blocks)))


def friedman_posthoc(
    scores: pd.DataFrame,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    zero_method: str = "wilcox",
) -> FriedmanResult:
    """Friedman test over blocks, mean ranks, and Holm-corrected pairwise Wilcoxon tests.

    Args:
        scores: ``(blocks, configurations)`` table, e.g. balanced accuracy per fold.
        higher_is_better: rank 1 goes to the highest score when true.
        alpha: family-wise level for Holm and for the Nemenyi CD.
        zero_method: Wilcoxon treatment of zero differences, as in ``scipy.stats.wilcoxon``.

    Raises:
        ValueError: fewer than 3 configurations or 2 blocks, missing scores, or all ties.
    """
    scores = _check_scores(scores)
    fried = stats.friedmanchisquare(*(scores[c].to_numpy() for c in scores.columns))
    ranks = scores.rank(axis=1, ascending=not higher_is_better, method="average")
    mean_ranks = ranks.mean().sort_values(kind="stable")
    rows = []
    for a, b in itertools.combinations(mean_ranks.index, 2):  # a ranks at least as well as b
        diff = scores[a] - scores[b]
        if np.all(diff == 0):  # identical columns: no evidence of a difference
            stat, p = math.nan, 1.0
        else:
            res = stats.wilcoxon(scores[a], scores[b], zero_method=zero_method)
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append(
            {"a": a, "b": b, "median_diff": float(diff.median()), "statistic": stat, "p": p}
        )
    pairwise = pd.DataFrame(rows)
    reject, p_holm, _, _ = multipletests(pairwise["p"], alpha=alpha, method="holm")
    pairwise["p_holm"], pairwise["significant"] = p_holm, reject
    cd = nemenyi_cd(scores.shape[1], len(scores), alpha)
    medians = scores.median()[mean_ranks.index]
    return FriedmanResult(
        float(fried.statistic),
        float(fried.pvalue),
        mean_ranks,
        medians,
        pairwise,
        len(scores),
        alpha,
        cd,
    )


def layer_effect(
    metrics: pd.DataFrame,
    metric: str = "balanced_accuracy",
    encoder_col: str = "encoder",
    layer_col: str = "layer",
    block_col: str = "fold",
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """Per encoder: the best layer by mean metric, and whether the layer matters.

    Blocks are ``block_col`` values (folds); blocks missing a layer are dropped with a warning.
    The test is Friedman across layers for 3 or more layers, Wilcoxon for 2, none for 1.

    Args:
        metrics: long table with one row per (encoder, layer, block); filter other factors
            (e.g. classifier) first.

    Returns:
        One row per encoder: encoder, best_layer, best_mean, n_layers, n_blocks, test,
        statistic, p, mean_ranks (layer -> mean rank, best first).
    """
    keys = [encoder_col, layer_col, block_col]
    dup = metrics.duplicated(keys)
    if dup.any():
        raise ValueError(
            f"{int(dup.sum())} duplicate ({', '.join(keys)}) rows: filter other factors first"
        )
    out = []
    for encoder, sub in metrics.groupby(encoder_col, sort=False):
        table = sub.pivot(index=block_col, columns=layer_col, values=metric)
        table = table[list(dict.fromkeys(sub[layer_col]))]  # keep the layers' given order
        complete = table.dropna()
        if len(complete) < len(table):
            log.warning(
                "%s: dropping %d blocks missing a layer", encoder, len(table) - len(complete)
            )
        means = complete.mean()
        best = means.idxmax() if higher_is_better else means.idxmin()
        row: dict[str, object] = {"encoder": encoder, "best_layer": best}
        row |= {"best_mean": float(means.max() if higher_is_better else means.min())}
        row |= {"n_layers": table.shape[1], "n_blocks": len(complete)}
        row |= {"test": "none", "statistic": math.nan, "p": math.nan, "mean_ranks": None}
        if table.shape[1] >= 3:
            res = friedman_posthoc(complete, higher_is_better)
            row |= {"test": "friedman", "statistic": res.statistic, "p": res.p_value}
            row["mean_ranks"] = res.mean_ranks.round(3).to_dict()
        elif table.shape[1] == 2:
            pt = paired_test(complete.iloc[:, 0], complete.iloc[:, 1])
            row |= {"test": "wilcoxon", "statistic": pt.statistic, "p": pt.p_value}
        out.append(row)
    return pd.DataFrame(out)


def _cliques(result: FriedmanResult) -> list[tuple[int, int]]:
    """Maximal runs ``(i, j)`` of rank-ordered configurations with no significant pair."""
    names = list(result.mean_ranks.index)
    sig = {
        frozenset((a, b))
        for a, b in result.pairwise.loc[result.pairwise.significant, ["a", "b"]].itertuples(
            index=False
        )
    }
    runs: list[tuple[int, int]] = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and all(
            frozenset((names[m], names[j + 1])) not in sig for m in range(i, j + 1)
        ):
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return runs


def plot_critical_difference(
    result: FriedmanResult, path: Path | str, title: str | None = None
) -> Path:
    """Draw a critical-difference diagram (Demšar 2006) and save it atomically to ``path``.

    Configurations are placed at their mean rank (best on the left); thick bars join runs with
    no Holm-Wilcoxon significant pair; the Nemenyi CD is drawn as a reference interval.

    Returns:
        The path written; the format follows its suffix (``.png``, ``.pdf``, ``.svg``).
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    ranks = result.mean_ranks
    k = len(ranks)
    half = math.ceil(k / 2)
    fig = Figure(figsize=(8, 1.6 + 0.3 * half))
    ax = fig.add_axes((0.25, 0.05, 0.5, 0.8))
    ax.set_xlim(1, k)
    ax.set_ylim(-(half + 1.5), 2)
    ax.axis("off")
    ax.hlines(0, 1, k, color="k", lw=1)
    for t in range(1, k + 1):
        ax.vlines(t, 0, 0.2, color="k", lw=1)
        ax.text(t, 0.35, str(t), ha="center", va="bottom", fontsize=8)
    for i, (name, r) in enumerate(ranks.items()):
        left = i < half
        y = -(i if left else k - 1 - i) - 1.0
        x_text = 1 - 0.05 * k if left else k + 0.05 * k
        ax.plot([r, r, x_text], [0, y, y], color="k", lw=0.8, clip_on=False)
        label = f"{name} ({r:.2f})"
        ax.text(x_text, y, label, ha="right" if left else "left", va="center", fontsize=8)
    for n, (i, j) in enumerate(_cliques(result)):
        y = -0.3 - 0.25 * n
        ax.plot([ranks.iloc[i] - 0.03, ranks.iloc[j] + 0.03], [y, y], color="k", lw=3)
    cd = result.critical_difference
    if cd < k - 1:
        ax.plot([1, 1 + cd], [1.3, 1.3], color="k", lw=1)
        ax.text(1 + cd / 2, 1.45, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=150, bbox_inches="tight")
    return path
