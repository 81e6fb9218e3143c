"""The one cluster bootstrap of prfeval: resample reference images, recompute a statistic, take percentiles.

Meaning
-------
Rows (comparisons, triplets, per-image BD-rates) that share a reference image are correlated — the same content
favours the same codec — so the unit of evidence is the reference image, the *cluster*, not the row. A replicate
draws as many clusters as there are, uniformly with replacement, from one seeded ``numpy`` Generator; a cluster
drawn k times counts k times with all its rows, a cluster not drawn is absent. The statistic is recomputed on every
replicate and the interval at level ``1 - alpha`` is the ``alpha/2`` and ``1 - alpha/2`` percentiles over the
replicates where it is defined.

A replicate is given as per-cluster *counts* (how often each cluster was drawn): a multinomial draw of
``n_clusters`` out of ``n_clusters`` equally likely cells, ``rng.multinomial(n, [1/n] * n)``. Drawing integer
indices (``rng.integers(0, n, n)``) and counting them, ``np.bincount(draws, minlength=n)``, is the same
distribution; counts are what weighted statistics need (a weighted sum per cluster instead of gathering rows).

Clusters are numbered in the sorted order of their labels (the order of first appearance when the labels cannot be
sorted), so the draws depend only on the seed and the set of labels, never on the order of the rows. Drawing in
chunks gives the same stream as drawing at once.

Users: :mod:`pipeline.stats.bradley_terry` (refits the ratings on each replicate's counts),
:mod:`pipeline.stats.bdrate` (the mean per-image BD-rate) and :mod:`pipeline.regress` (means of the triplet
statistics), the last two through :func:`cluster_bootstrap`.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK_ENTRIES = 2**22  # bound on replicates x clusters per chunk of counts (32 MB of float64)


def check(n_boot: int, alpha: float | None = None) -> None:
    """Refuse a bootstrap size below 1 or a level outside (0, 1)."""
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")


def cluster_codes(labels: Sequence[Hashable] | np.ndarray) -> tuple[np.ndarray, list[Hashable]]:
    """The cluster number of every row and the cluster labels, numbered in sorted label order."""
    series = pd.Series(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=object)
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # mixed, unorderable labels: order of first appearance
        codes, uniques = pd.factorize(series, sort=False)
    return codes.astype(np.intp), list(uniques)


def count_chunks(
    n_clusters: int, n_boot: int, seed: int, *, max_entries: int = CHUNK_ENTRIES
) -> Iterator[tuple[int, np.ndarray]]:
    """The replicates' per-cluster counts, ``(start, counts)`` with counts of shape ``(size, n_clusters)`` (float).

    The concatenation of the chunks is :func:`cluster_counts`, whatever ``max_entries``.
    """
    check(n_boot)
    if n_clusters < 1:
        raise ValueError("a bootstrap needs at least one cluster")
    rng = np.random.default_rng(seed)
    uniform = np.full(n_clusters, 1.0 / n_clusters)
    chunk = max(1, max_entries // n_clusters)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        yield start, rng.multinomial(n_clusters, uniform, size=size).astype(np.float64)


def cluster_counts(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each replicate: shape ``(n_boot, n_clusters)``, rows summing to
    ``n_clusters`` (float, ready to weight with)."""
    return np.concatenate([c for _, c in count_chunks(n_clusters, n_boot, seed)], axis=0)


def percentiles(replicates: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``alpha/2`` and ``1 - alpha/2`` percentiles over replicates (axis 0), ignoring NaN (a statistic
    undefined in a replicate); NaN where no replicate defines it."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = np.where(np.isfinite(reps), reps, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        low, high = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return low, high


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap percentile interval."""

    mean: float
    low: float
    high: float
    n: int  # values used (finite)
    n_clusters: int  # clusters with at least one value


def cluster_bootstrap(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable] | np.ndarray,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Interval]:
    """Means of ``values`` (shape ``(n,)`` or ``(n, k)``) with percentile intervals from the cluster bootstrap.

    A replicate's mean is over all values of the drawn clusters (a cluster drawn twice counts twice). Non-finite
    values are left out column by column. All columns share the draws. Returns one :class:`Interval` per column
    (NaN mean and interval for a column without finite values).
    """
    check(n_boot, alpha)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must be 1- or 2-dimensional, got shape {v.shape}")
    n_labels = len(clusters)
    if n_labels != v.shape[0]:
        raise ValueError(f"clusters must have one label per value ({v.shape[0]}), got {n_labels}")
    k = v.shape[1]
    if v.shape[0] == 0:
        return [Interval(np.nan, np.nan, np.nan, 0, 0) for _ in range(k)]
    codes, uniques = cluster_codes(clusters)
    n_clusters = len(uniques)
    ok = np.isfinite(v)
    sums = np.zeros((n_clusters, k))
    counts = np.zeros((n_clusters, k))
    np.add.at(sums, codes, np.where(ok, v, 0.0))
    np.add.at(counts, codes, ok.astype(np.float64))
    replicates = np.empty((n_boot, k))
    for start, draws in count_chunks(n_clusters, n_boot, seed):
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates[start : start + len(draws)] = (draws @ sums) / (draws @ counts)
    low, high = percentiles(replicates, alpha)
    out = []
    for j in range(k):
        n = int(counts[:, j].sum())
        if n == 0:
            out.append(Interval(np.nan, np.nan, np.nan, 0, 0))
            continue
        mean = float(sums[:, j].sum() / n)
        out.append(Interval(mean, float(low[j]), float(high[j]), n, int((counts[:, j] > 0).sum())))
    return out


__all__ = [
    "Interval",
    "check",
    "cluster_bootstrap",
    "cluster_codes",
    "cluster_counts",
    "count_chunks",
    "percentiles",
]
