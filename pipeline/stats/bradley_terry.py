"""Bradley–Terry ratings from soft pairwise outcomes, with a cluster bootstrap for confidence intervals.

Model
-----
Each item ``i`` has a log-strength ``s_i`` (natural log odds scale) and ``P(i beats j) = σ(s_i - s_j)`` with
``σ(x) = 1 / (1 + exp(-x))``; a score difference of 1 means odds of ``e ≈ 2.72`` to 1, of ``log 3 ≈ 1.10`` a 75 %
win probability. A comparison ``c`` of ``a_c`` with ``b_c`` has a soft outcome ``p_c ∈ [0, 1]`` (the probability,
or the fraction of judges, that ``a_c`` wins) and a weight ``w_c`` (default 1). The fit maximises the penalised
log-likelihood

    Σ_c w_c [p_c log σ(s_a - s_b) + (1 - p_c) log σ(s_b - s_a)]  -  (prior / 2) Σ_i s_i²,

i.e. the maximum a-posteriori estimate under independent Gaussian priors ``s_i ~ N(0, 1 / prior)``. The prior
(default ``prior = 0.01``: standard deviation 10 on the log-odds scale, worth much less than one comparison) keeps
ratings finite under perfect separation (an item that wins everything) and in disconnected comparison graphs, and
fixes the otherwise free additive constant: at the optimum ``Σ_i s_i = 0`` exactly (the likelihood's gradient
sums to zero over items), so scores are centred on their mean. It is choix's ``alpha`` regularisation with
``alpha = prior / 2`` (choix penalises ``alpha Σ s_i²``). Hard outcomes are the special case ``p ∈ {0, 1}``; a
soft outcome ``p`` is exactly a weighted pair of hard comparisons (``a`` wins with weight ``w p``, ``b`` with
weight ``w (1 - p)``).

The objective depends on the data only through, per unordered pair ``{i, j}``, the total weight ``W_ij`` and the
weighted wins of ``i``, ``S_ij``; it is strictly concave, and Newton's method with backtracking (exact gradient and
Hessian) converges to machine precision in a handful of iterations. The bootstrap fits all replicates at once with
a batched Newton iteration on these pair statistics.

Bootstrap
---------
Comparisons sharing a reference image are correlated (the same content favours the same codec), so the bootstrap
resamples clusters (reference images) with replacement, not comparisons (the draws of
:mod:`pipeline.stats.bootstrap`), refits, and reports percentile intervals.
An item absent from a replicate (none of its clusters drawn) has no score in that replicate; intervals use the
replicates where it is present. ``rank = 1 + number of items whose lower bound is above this item's upper bound``.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit, log_expit

from pipeline.stats import bootstrap as bootstrap_mod

DEFAULT_PRIOR = 0.01
_TOL = 1e-10
_MAX_ITER = 100
_CHUNK_ENTRIES = 2**23  # bound on n_replicates * n_items**2 per batched Newton chunk (64 MB of float64)


# ----------------------------------------------------------------------------------------------------------------
# Data preparation


@dataclass(frozen=True)
class _Comparisons:
    """Validated comparisons as item indices, with the item list."""

    items: list[Hashable]
    ia: np.ndarray  # (n,) int
    ib: np.ndarray
    p: np.ndarray  # (n,) float, P(a wins)
    w: np.ndarray  # (n,) float weights


def _default_items(a: np.ndarray, b: np.ndarray) -> list[Hashable]:
    labels = pd.unique(np.concatenate([a, b]))
    try:
        return sorted(labels.tolist())
    except TypeError:  # mixed, unorderable labels: order of first appearance
        return labels.tolist()


def _prepare(
    a: Sequence[Hashable] | np.ndarray,
    b: Sequence[Hashable] | np.ndarray,
    p_a: Sequence[float] | np.ndarray,
    items: Sequence[Hashable] | None,
    weights: Sequence[float] | np.ndarray | None,
) -> _Comparisons:
    a_arr = np.asarray(a, dtype=object) if not isinstance(a, np.ndarray) else a
    b_arr = np.asarray(b, dtype=object) if not isinstance(b, np.ndarray) else b
    p = np.asarray(p_a, dtype=np.float64)
    n = len(p)
    if a_arr.shape != (n,) or b_arr.shape != (n,):
        raise ValueError(
            f"a, b and p_a must be 1-d and of equal length, got {a_arr.shape}, {b_arr.shape}, {p.shape}"
        )
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have the length of p_a ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        bad = np.flatnonzero(~(np.isfinite(p) & (p >= 0) & (p <= 1)))
        raise ValueError(f"p_a must be finite and in [0, 1]; bad rows {bad[:10].tolist()}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    item_list = _default_items(a_arr, b_arr) if items is None else list(items)
    index = pd.Index(item_list)
    if not index.is_unique:
        raise ValueError("items contains duplicates")
    ia, ib = index.get_indexer(a_arr), index.get_indexer(b_arr)
    missing = np.flatnonzero((ia < 0) | (ib < 0))
    if missing.size:
        row = missing[0]
        label = a_arr[row] if ia[row] < 0 else b_arr[row]
        raise ValueError(
            f"{missing.size} comparisons involve items not in `items`, e.g. {label!r} (row {row})"
        )
    same = np.flatnonzero(ia == ib)
    if same.size:
        raise ValueError(f"an item compared with itself in {same.size} rows, e.g. row {same[0]}")
    return _Comparisons(item_list, ia.astype(np.intp), ib.astype(np.intp), p, w)


@dataclass(frozen=True)
class _Pairs:
    """Sufficient statistics per unordered pair (i < j): total weight and weighted wins of i."""

    n_items: int
    i: np.ndarray  # (n_pairs,)
    j: np.ndarray
    inverse: np.ndarray  # (n_comparisons,) pair index of each comparison
    incidence: sparse.csr_matrix  # (n_items, n_pairs): +1 at (i, p), -1 at (j, p)


def _pair_index(c: _Comparisons) -> tuple[_Pairs, np.ndarray]:
    """Unordered pair of each comparison and the sign (+1 when a is the pair's first item)."""
    lo, hi = np.minimum(c.ia, c.ib), np.maximum(c.ia, c.ib)
    n = len(c.items)
    codes, inverse = np.unique(lo * n + hi, return_inverse=True)
    i, j = (codes // n).astype(np.intp), (codes % n).astype(np.intp)
    cols = np.arange(len(codes))
    incidence = sparse.csr_matrix(
        (np.r_[np.ones(len(codes)), -np.ones(len(codes))], (np.r_[i, j], np.r_[cols, cols])),
        shape=(n, len(codes)),
    )
    pairs = _Pairs(n, i, j, inverse.ravel(), incidence)
    return pairs, np.where(c.ia == lo, 1.0, -1.0)


def _pair_stats(c: _Comparisons, pairs: _Pairs, sign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: W = Σ w, S = Σ w P(first item wins)."""
    p_first = np.where(sign > 0, c.p, 1.0 - c.p)
    n_pairs = len(pairs.i)
    weight = np.bincount(pairs.inverse, weights=c.w, minlength=n_pairs)
    wins = np.bincount(pairs.inverse, weights=c.w * p_first, minlength=n_pairs)
    return weight, wins


# ----------------------------------------------------------------------------------------------------------------
# Batched Newton on pair statistics


def _objective(
    s: np.ndarray, pairs: _Pairs, weight: np.ndarray, wins: np.ndarray, prior: float
) -> np.ndarray:
    """Negative penalised log-likelihood per replicate; s (R, n), weight/wins (R, P)."""
    d = s[:, pairs.i] - s[:, pairs.j]
    # -[S log σ(d) + (W - S) log σ(-d)]
    nll = -(wins * log_expit(d) + (weight - wins) * log_expit(-d)).sum(axis=1)
    return nll + 0.5 * prior * np.einsum("ri,ri->r", s, s)


def _newton(
    pairs: _Pairs, weight: np.ndarray, wins: np.ndarray, prior: float
) -> tuple[np.ndarray, int, bool]:
    """MAP scores for each replicate (rows of weight/wins); returns (scores (R, n), iterations, converged)."""
    n_rep, n = weight.shape[0], pairs.n_items
    s = np.zeros((n_rep, n))
    f = _objective(s, pairs, weight, wins, prior)
    rows = np.arange(n)
    active = np.ones(n_rep, dtype=bool)
    for iteration in range(1, _MAX_ITER + 1):
        idx = np.flatnonzero(active)
        sa, wa, sw = s[idx], weight[idx], wins[idx]
        d = sa[:, pairs.i] - sa[:, pairs.j]
        sig = expit(d)
        g_pair = wa * sig - sw  # d(nll)/d(d)
        grad = prior * sa
        grad += (pairs.incidence @ g_pair.T).T
        h_pair = wa * sig * (1.0 - sig)
        hess = np.zeros((len(idx), n, n))
        hess[:, pairs.i, pairs.j] = -h_pair
        hess[:, pairs.j, pairs.i] = -h_pair
        hess[:, rows, rows] = prior - hess.sum(axis=2)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # backtracking: halve the step of replicates whose objective did not decrease
        t = np.ones(len(idx))
        f_old = f[idx]
        decrement = np.einsum("ri,ri->r", grad, step)  # Newton decrement squared
        for _ in range(60):
            cand = sa - t[:, None] * step
            f_new = _objective(cand, pairs, wa, sw, prior)
            bad = f_new > f_old - 1e-4 * t * decrement
            bad &= np.abs(f_new - f_old) > 1e-12 * np.maximum(1.0, np.abs(f_old))
            if not bad.any():
                break
            t = np.where(bad, t * 0.5, t)
        s[idx] = cand
        f[idx] = f_new
        done = np.abs(t[:, None] * step).max(axis=1, initial=0.0) < _TOL
        active[idx[done]] = False
        if not active.any():
            return s, iteration, True
    return s, _MAX_ITER, False


# ----------------------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class BTResult:
    """A Bradley–Terry fit.

    ``scores`` are log-strengths on the natural log-odds scale, centred to mean 0 (``P(i beats j) =
    σ(s_i - s_j)``); ``win_rate`` is each item's weighted mean probability of winning its comparisons (NaN for an
    item never compared); ``n_comparisons`` counts the comparisons each item took part in.
    """

    items: list[Hashable]
    scores: np.ndarray
    win_rate: np.ndarray
    n_comparisons: np.ndarray
    prior: float
    n_iter: int
    converged: bool
    _index: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", pd.Index(self.items))

    def score(self, item: Hashable) -> float:
        """The log-strength of one item."""
        return float(self.scores[self._position(item)])

    def prob(self, i: Hashable, j: Hashable) -> float:
        """``P(i beats j) = σ(s_i - s_j)``."""
        return float(expit(self.scores[self._position(i)] - self.scores[self._position(j)]))

    def prob_matrix(self) -> pd.DataFrame:
        """``P(row beats column)`` for every pair of items (0.5 on the diagonal)."""
        p = expit(self.scores[:, None] - self.scores[None, :])
        return pd.DataFrame(p, index=self._index, columns=self._index)

    def to_frame(self) -> pd.DataFrame:
        """One row per item: item, score, win_rate, n_comparisons; best first."""
        df = pd.DataFrame(
            {
                "item": self.items,
                "score": self.scores,
                "win_rate": self.win_rate,
                "n_comparisons": self.n_comparisons,
            }
        )
        return df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)

    def _position(self, item: Hashable) -> int:
        loc = self._index.get_indexer([item])[0]
        if loc < 0:
            raise KeyError(f"unknown item {item!r}")
        return int(loc)


def _win_stats(c: _Comparisons) -> tuple[np.ndarray, np.ndarray]:
    n = len(c.items)
    won = np.bincount(c.ia, weights=c.w * c.p, minlength=n) + np.bincount(
        c.ib, weights=c.w * (1 - c.p), minlength=n
    )
    total = np.bincount(c.ia, weights=c.w, minlength=n) + np.bincount(c.ib, weights=c.w, minlength=n)
    count = np.bincount(c.ia, minlength=n) + np.bincount(c.ib, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(total > 0, won / np.where(total > 0, total, 1.0), np.nan)
    return win_rate, count


def _check_prior(prior: float) -> float:
    prior = float(prior)
    if not (prior > 0 and np.isfinite(prior)):
        raise ValueError(f"prior must be a positive finite precision, got {prior}")
    return prior


def fit(
    a: Sequence[Hashable] | np.ndarray,
    b: Sequence[Hashable] | np.ndarray,
    p_a: Sequence[float] | np.ndarray,
    *,
    items: Sequence[Hashable] | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    prior: float = DEFAULT_PRIOR,
) -> BTResult:
    """Fit Bradley–Terry log-strengths to soft pairwise outcomes (see the module docstring for the objective).

    ``a``, ``b``: item labels (strings or ints) of each comparison; ``p_a``: P(a wins), in [0, 1]; ``items``: the
    items to rate, in output order (default: every label, sorted); items listed but never compared get score 0
    (the prior mean); ``weights``: per-comparison weights (default 1); ``prior``: precision of the Gaussian prior.
    """
    prior = _check_prior(prior)
    c = _prepare(a, b, p_a, items, weights)
    win_rate, count = _win_stats(c)
    n = len(c.items)
    if len(c.p) == 0:
        return BTResult(c.items, np.zeros(n), win_rate, count, prior, 0, True)
    pairs, sign = _pair_index(c)
    weight, wins = _pair_stats(c, pairs, sign)
    s, n_iter, converged = _newton(pairs, weight[None], wins[None], prior)
    scores = s[0] - s[0].mean()  # already 0 up to rounding
    return BTResult(c.items, scores, win_rate, count, prior, n_iter, converged)


def bootstrap_samples(
    a: Sequence[Hashable] | np.ndarray,
    b: Sequence[Hashable] | np.ndarray,
    p_a: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable] | np.ndarray,
    *,
    items: Sequence[Hashable] | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    prior: float = DEFAULT_PRIOR,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[list[Hashable], np.ndarray]:
    """Cluster-bootstrap replicates of the scores: ``(items, samples)`` with samples of shape ``(n_boot, n_items)``.

    Each replicate is a draw of :mod:`pipeline.stats.bootstrap` (as many clusters as there are, with replacement;
    a cluster drawn k times counts k times) and refits on the drawn clusters' comparisons. Entries are NaN where an item has no comparison in the replicate; each
    row is centred to mean 0 over the items present.
    """
    prior = _check_prior(prior)
    bootstrap_mod.check(n_boot)
    c = _prepare(a, b, p_a, items, weights)
    cl = np.asarray(clusters, dtype=object) if not isinstance(clusters, np.ndarray) else clusters
    if cl.shape != c.p.shape:
        raise ValueError(f"clusters must have one label per comparison ({len(c.p)}), got shape {cl.shape}")
    n = len(c.items)
    if len(c.p) == 0:
        return c.items, np.full((n_boot, n), np.nan)
    cluster_codes, labels = bootstrap_mod.cluster_codes(cl)
    n_clusters = len(labels)
    pairs, sign = _pair_index(c)
    n_pairs = len(pairs.i)
    p_first = np.where(sign > 0, c.p, 1.0 - c.p)
    # (cluster, pair) sufficient statistics as sparse matrices, and (cluster, item) presence
    shape = (n_clusters, n_pairs)
    cw = sparse.csr_matrix((c.w, (cluster_codes, pairs.inverse)), shape=shape)
    cs = sparse.csr_matrix((c.w * p_first, (cluster_codes, pairs.inverse)), shape=shape)
    presence = sparse.csr_matrix(
        (np.ones(2 * len(c.p)), (np.concatenate([cluster_codes] * 2), np.concatenate([c.ia, c.ib]))),
        shape=(n_clusters, n),
    )
    draws = bootstrap_mod.cluster_counts(n_clusters, n_boot, seed)
    samples = np.empty((n_boot, n))
    chunk = max(1, _CHUNK_ENTRIES // max(1, n * n))
    for start in range(0, n_boot, chunk):
        counts = draws[start : start + chunk]
        weight = np.asarray((cw.T @ counts.T).T)
        wins = np.asarray((cs.T @ counts.T).T)
        s, _, _ = _newton(pairs, weight, wins, prior)
        present = np.asarray((presence.T @ counts.T).T) > 0
        s = np.where(present, s, np.nan)
        samples[start : start + chunk] = s - np.nanmean(s, axis=1, keepdims=True)
    return c.items, samples


def ranks_from_intervals(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``rank_i = 1 + #{j : low_j > high_i}``: items whose intervals overlap share ranks."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return 1 + (low[None, :] > high[:, None]).sum(axis=1)


def bootstrap(
    comparisons: pd.DataFrame,
    *,
    a_col: str = "a",
    b_col: str = "b",
    p_col: str = "p_a",
    cluster_col: str = "ref_id",
    weight_col: str | None = None,
    items: Sequence[Hashable] | None = None,
    prior: float = DEFAULT_PRIOR,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Ratings with cluster-bootstrap percentile intervals, one row per item, best first.

    ``comparisons`` has one row per comparison: the two items (``a_col``, ``b_col``, e.g. ``a_codec`` and
    ``b_codec`` of the pairs table), ``p_col`` = P(a wins), and ``cluster_col``, the unit resampled (the reference
    image). Columns of the result: ``item``, ``score`` (the fit on all data, natural log-odds, mean 0), ``ci_low``,
    ``ci_high`` (the ``alpha/2`` and ``1 - alpha/2`` percentiles of the bootstrap scores), ``se`` (bootstrap
    standard deviation), ``rank`` (1 + number of items whose ``ci_low`` exceeds this item's ``ci_high``),
    ``win_rate``, ``n_comparisons``, ``n_clusters`` (clusters the item appears in). ``attrs`` records n_boot,
    alpha, seed and prior.
    """
    bootstrap_mod.check(n_boot, alpha)
    a, b, p = comparisons[a_col].to_numpy(), comparisons[b_col].to_numpy(), comparisons[p_col].to_numpy()
    w = comparisons[weight_col].to_numpy() if weight_col is not None else None
    clusters = comparisons[cluster_col].to_numpy()
    point = fit(a, b, p, items=items, weights=w, prior=prior)
    _, samples = bootstrap_samples(
        a, b, p, clusters, items=point.items, weights=w, prior=prior, n_boot=n_boot, seed=seed
    )
    low, high = bootstrap_mod.percentiles(samples, alpha)  # NaN for items never compared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: items never compared
        se = np.nanstd(samples, axis=0, ddof=1)
    n_clusters = (
        pd.concat(
            [
                pd.DataFrame({"item": a, "cluster": clusters}),
                pd.DataFrame({"item": b, "cluster": clusters}),
            ]
        )
        .groupby("item")["cluster"]
        .nunique()
    )
    out = pd.DataFrame(
        {
            "item": point.items,
            "score": point.scores,
            "ci_low": low,
            "ci_high": high,
            "se": se,
            "rank": ranks_from_intervals(low, high),
            "win_rate": point.win_rate,
            "n_comparisons": point.n_comparisons,
            "n_clusters": n_clusters.reindex(pd.Index(point.items)).fillna(0).astype(np.int64).to_numpy(),
        }
    )
    out = out.sort_values(["score"], ascending=False, kind="stable").reset_index(drop=True)
    out.attrs.update({"n_boot": n_boot, "alpha": alpha, "seed": seed, "prior": prior})
    return out


def win_matrix(
    a: Sequence[Hashable] | np.ndarray,
    b: Sequence[Hashable] | np.ndarray,
    p_a: Sequence[float] | np.ndarray,
    items: Sequence[Hashable] | None = None,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Mean P(row beats column) over the comparisons of each pair, in either order; NaN where never compared.

    ``M[i, j] + M[j, i] == 1`` wherever defined; the diagonal is NaN.
    """
    c = _prepare(a, b, p_a, items, weights)
    n = len(c.items)
    won = np.zeros((n, n))
    total = np.zeros((n, n))
    np.add.at(won, (c.ia, c.ib), c.w * c.p)
    np.add.at(won, (c.ib, c.ia), c.w * (1 - c.p))
    np.add.at(total, (c.ia, c.ib), c.w)
    np.add.at(total, (c.ib, c.ia), c.w)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(total > 0, won / np.where(total > 0, total, 1.0), np.nan)
    index = pd.Index(c.items)
    return pd.DataFrame(m, index=index, columns=index)
