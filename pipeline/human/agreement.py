"""How often a judge agrees with people: per answer, per method (Bradley–Terry rank correlation) and as BD-rate.

Input: a pairs table with one row per original and unordered pair, ``original, a, b, n_a, n_b`` (the human answers
for ``a`` and for ``b``; :func:`pipeline.human.study.aggregate` makes it), and for each judge a preference per row,
``pref`` in [0, 1]: the judge's P(``a`` closer). A judge that gives ``p_a`` (PRFNet) gives it as is; a judge that
scores each image (a metric, file size) gives :func:`preference_from_scores`, 1 when ``a`` scores better, 0 when
worse, 0.5 when equal. NaN means the judge has no preference for the row (e.g. a pair it did not score); such rows
are left out of that judge's figures and counted (``n_missing``).

Decisions, stated once:

* **Agreement** is the share of human *answers* the judge agrees with. A row contributes ``n_a`` agreeing answers
  when the judge prefers ``a`` (``pref > 0.5``), ``n_b`` when it prefers ``b`` (``pref < 0.5``) and ``(n_a + n_b) /
  2`` on a tie (``pref == 0.5``): ties count half.
* The **majority-vote ceiling** is the agreement of the best judge that knows the answers: each answer agrees when
  it is on its own pair's majority side; a pair with a tied vote counts half. A pair answered once agrees with
  itself, so the ceiling is an upper bound that depends on how many answers each pair has.
* **File size** as a judge prefers the *larger* file (more bits, closer to the original): score = bytes or bpp,
  higher is better.
* **Intervals** come from the one cluster bootstrap (:mod:`pipeline.stats.bootstrap`) over originals: a replicate
  draws originals with replacement and the share is the ratio ``Σ agreeing / Σ answers`` over the drawn originals'
  rows. All judges and all groups (same- vs cross-encoder pairs, bpp ranges) share the same draws, so their
  intervals are comparable and the figures are reproducible from the seed and the set of originals alone.
* **Method level**: a Bradley–Terry fit (:mod:`pipeline.stats.bradley_terry`) of the human labels per method,
  each row weighted by its number of answers, against the same fit of each judge's ``pref`` on the same rows and
  weights; Spearman and Kendall (tau-b) correlations of the two score vectors (``scipy.stats``), with percentile
  intervals from refitting both on every bootstrap replicate (the same draws of originals for both fits).
* **BD-rate** of a test family against an anchor family on a judge's axis: each method is a point (its mean bpp,
  its Bradley–Terry score); :func:`pipeline.stats.bdrate.bd_rate`, rates held fixed across replicates. A
  replicate where the curve is not monotonic has no value; the interval is over the replicates that have one and
  ``n_valid`` says how many.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from pipeline.stats import bdrate, bootstrap
from pipeline.stats import bradley_terry as bt

CEILING = "majority ceiling"
ALL = "all"
SAME_ENCODER = "same encoder"
CROSS_ENCODER = "cross encoder"
PAIR_REQUIRED = ("original", "a", "b", "n_a", "n_b")
AGREEMENT_COLUMNS = [
    "judge",
    "group",
    "agreement",
    "ci_low",
    "ci_high",
    "n_answers",
    "n_pairs",
    "n_originals",
    "n_missing",
]
RANK_COLUMNS = [
    "judge",
    "spearman",
    "spearman_low",
    "spearman_high",
    "kendall",
    "kendall_low",
    "kendall_high",
    "n_methods",
]
BD_COLUMNS = ["judge", "anchor", "test", "bd_rate", "ci_low", "ci_high", "n_valid", "reason"]


def _check_pairs(pairs: pd.DataFrame) -> None:
    missing = [c for c in PAIR_REQUIRED if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs table: missing column(s) {', '.join(missing)}")
    n_a, n_b = pairs["n_a"].to_numpy(np.float64), pairs["n_b"].to_numpy(np.float64)
    if np.any(~np.isfinite(n_a) | ~np.isfinite(n_b) | (n_a < 0) | (n_b < 0)):
        raise ValueError("pairs table: n_a and n_b must be finite counts >= 0")


def _pref(pairs: pd.DataFrame, pref: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(pref, dtype=np.float64)
    if p.shape != (len(pairs),):
        raise ValueError(f"a judge needs one preference per pair row ({len(pairs)}), got shape {p.shape}")
    if np.any(np.isfinite(p) & ((p < 0) | (p > 1))):
        raise ValueError("a judge's preference is P(a closer), in [0, 1]")
    return np.where(np.isfinite(p), p, np.nan)


# ----------------------------------------------------------------------------------------------------------------
# Preferences


def preference_from_scores(
    score_a: Sequence[float] | np.ndarray,
    score_b: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool = True,
) -> np.ndarray:
    """1 where ``a`` scores better, 0 where worse, 0.5 where equal, NaN where either score is missing."""
    sa, sb = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf
        diff = sa - sb if higher_is_better else sb - sa
    # +inf vs +inf (two lossless encodes under PSNR) is a tie, not a missing value
    both_inf = np.isinf(sa) & np.isinf(sb) & (sa == sb)
    out = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    out = np.where(both_inf, 0.5, out)
    return np.where(np.isnan(sa) | np.isnan(sb), np.nan, out)


def decision(pref: np.ndarray) -> np.ndarray:
    """The judge's decision per row: 1 (``a``), 0 (``b``), 0.5 (tie), NaN (none)."""
    p = np.asarray(pref, dtype=np.float64)
    return np.where(np.isnan(p), np.nan, np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5)))


def agreeing_answers(pairs: pd.DataFrame, pref: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per row, the human answers the judge agrees with (ties count half); NaN where the judge has no preference."""
    _check_pairs(pairs)
    d = decision(_pref(pairs, pref))
    n_a, n_b = pairs["n_a"].to_numpy(np.float64), pairs["n_b"].to_numpy(np.float64)
    return d * n_a + (1.0 - d) * n_b


def ceiling_answers(pairs: pd.DataFrame) -> np.ndarray:
    """Per row, the answers on the pair's majority side; half the answers of a pair with a tied vote."""
    _check_pairs(pairs)
    n_a, n_b = pairs["n_a"].to_numpy(np.float64), pairs["n_b"].to_numpy(np.float64)
    return np.where(n_a == n_b, (n_a + n_b) / 2.0, np.maximum(n_a, n_b))


# ----------------------------------------------------------------------------------------------------------------
# Groups


def encoder_pairing(family_a: Sequence[str], family_b: Sequence[str]) -> np.ndarray:
    """``"same encoder"`` or ``"cross encoder"`` per row."""
    fa, fb = np.asarray(family_a, dtype=object), np.asarray(family_b, dtype=object)
    return np.where(fa == fb, SAME_ENCODER, CROSS_ENCODER).astype(object)


def bpp_range(
    a_bpp: Sequence[float] | np.ndarray,
    b_bpp: Sequence[float] | np.ndarray,
    edges: Sequence[float] = (0.0, 1.0, 1.5, 2.0, 3.0, np.inf),
) -> np.ndarray:
    """The bpp range of each pair by the mean of its two rates, e.g. ``"bpp [1, 1.5)"``; None where unknown."""
    mean = (np.asarray(a_bpp, dtype=np.float64) + np.asarray(b_bpp, dtype=np.float64)) / 2.0
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0):
        raise ValueError("bpp edges must be at least two increasing numbers")
    names = [f"bpp [{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(e)]
    idx = np.searchsorted(e, mean, side="right") - 1
    ok = np.isfinite(mean) & (idx >= 0) & (idx < len(names))
    return np.array([names[i] if k else None for i, k in zip(idx, ok, strict=True)], dtype=object)


# ----------------------------------------------------------------------------------------------------------------
# Agreement with intervals


def ratio_bootstrap(
    numerators: np.ndarray,
    denominators: np.ndarray,
    clusters: Sequence | np.ndarray,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Σ num / Σ den`` per column (shape ``(n, k)``) with cluster-bootstrap percentile intervals.

    Returns ``(point, low, high)``, each of shape ``(k,)``; NaN for a column whose denominators sum to 0.
    """
    bootstrap.check(n_boot, alpha)
    num, den = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    if num.ndim == 1:
        num, den = num[:, None], den[:, None]
    codes, labels = bootstrap.cluster_codes(clusters)
    k = num.shape[1]
    sums, totals = np.zeros((len(labels), k)), np.zeros((len(labels), k))
    np.add.at(sums, codes, num)
    np.add.at(totals, codes, den)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = sums.sum(axis=0) / totals.sum(axis=0)
        replicates = np.empty((n_boot, k))
        for start, draws in bootstrap.count_chunks(len(labels), n_boot, seed):
            replicates[start : start + len(draws)] = (draws @ sums) / (draws @ totals)
    low, high = bootstrap.percentiles(replicates, alpha)
    point = np.where(totals.sum(axis=0) > 0, point, np.nan)
    return point, low, high


def agreement_table(
    pairs: pd.DataFrame,
    judges: Mapping[str, Sequence[float] | np.ndarray],
    *,
    groups: Mapping[str, Sequence | np.ndarray] | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """The agreement of each judge and the majority ceiling, overall and per group (:data:`AGREEMENT_COLUMNS`).

    ``judges``: name -> preference per row. ``groups``: name of a split (e.g. ``"pairing"``) -> a group label per
    row (None: the row is in no group of that split); each label becomes ``group = "<split>: <label>"``. The first
    rows are the ceiling then every judge over all rows (``group = "all"``), then the same per group.
    """
    _check_pairs(pairs)
    if pairs.empty:
        raise ValueError("pairs table: no rows")
    n = (pairs["n_a"] + pairs["n_b"]).to_numpy(np.float64)
    originals = pairs["original"].to_numpy()
    columns = {CEILING: (ceiling_answers(pairs), np.ones(len(pairs), dtype=bool))}
    for name, pref in judges.items():
        agreed = agreeing_answers(pairs, pref)
        columns[name] = (agreed, np.isfinite(agreed))
    selections = [(ALL, np.ones(len(pairs), dtype=bool))]
    for split, labels in (groups or {}).items():
        lab = np.asarray(labels, dtype=object)
        if lab.shape != (len(pairs),):
            raise ValueError(f"group {split!r} needs one label per pair row ({len(pairs)})")
        present = [x for x in pd.unique(lab) if x is not None and not (isinstance(x, float) and np.isnan(x))]
        for value in sorted(present, key=str):
            selections.append((f"{split}: {value}", lab == value))
    keys, nums, dens = [], [], []
    for group, sel in selections:
        for name, (agreed, ok) in columns.items():
            use = sel & ok
            keys.append((name, group, sel, use))
            nums.append(np.where(use, agreed, 0.0))
            dens.append(np.where(use, n, 0.0))
    point, low, high = ratio_bootstrap(
        np.stack(nums, axis=1), np.stack(dens, axis=1), originals, n_boot=n_boot, alpha=alpha, seed=seed
    )
    rows = []
    for j, (name, group, sel, use) in enumerate(keys):
        rows.append(
            {
                "judge": name,
                "group": group,
                "agreement": point[j],
                "ci_low": low[j],
                "ci_high": high[j],
                "n_answers": int(n[use].sum()),
                "n_pairs": int(use.sum()),
                "n_originals": int(pd.unique(originals[use]).size),
                "n_missing": int((sel & ~use).sum()),
            }
        )
    out = pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
    out.attrs.update({"n_boot": n_boot, "alpha": alpha, "seed": seed})
    return out


# ----------------------------------------------------------------------------------------------------------------
# Method level


def _bt_inputs(pairs: pd.DataFrame, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = (pairs["n_a"] + pairs["n_b"]).to_numpy(np.float64)
    ok = np.isfinite(p)
    return np.where(ok, p, 0.5), np.where(ok, n, 0.0)


def method_scores(
    pairs: pd.DataFrame,
    pref: Sequence[float] | np.ndarray | None = None,
    *,
    items: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    prior: float = bt.DEFAULT_PRIOR,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Bradley–Terry scores per method of the human labels (``pref=None``) or of a judge's preferences.

    Each row weighs its number of human answers; a row without a preference weighs 0. Returns ``(items, scores,
    samples)`` with ``samples`` of shape ``(n_boot, n_items)`` from the bootstrap over originals (NaN where a
    method is absent from a replicate).
    """
    _check_pairs(pairs)
    if pref is None:
        n = (pairs["n_a"] + pairs["n_b"]).to_numpy(np.float64)
        p = np.divide(pairs["n_a"].to_numpy(np.float64), n, out=np.full(len(n), np.nan), where=n > 0)
    else:
        p = _pref(pairs, pref)
    p, w = _bt_inputs(pairs, p)
    a, b = pairs["a"].to_numpy(dtype=object), pairs["b"].to_numpy(dtype=object)
    point = bt.fit(a, b, p, items=items, weights=w, prior=prior)
    _, samples = bt.bootstrap_samples(
        a,
        b,
        p,
        pairs["original"].to_numpy(dtype=object),
        items=point.items,
        weights=w,
        prior=prior,
        n_boot=n_boot,
        seed=seed,
    )
    return [str(i) for i in point.items], point.scores, samples


def score_table(
    pairs: pd.DataFrame,
    judges: Mapping[str, Sequence[float] | np.ndarray],
    *,
    prior: float = bt.DEFAULT_PRIOR,
) -> pd.DataFrame:
    """One row per method: its Bradley–Terry score from the human labels (``people``) and from each judge (point
    fits, the weights of :func:`method_scores`); the data of the ranking scatter."""
    _check_pairs(pairs)
    a, b = pairs["a"].to_numpy(dtype=object), pairs["b"].to_numpy(dtype=object)
    n = (pairs["n_a"] + pairs["n_b"]).to_numpy(np.float64)
    human = np.divide(pairs["n_a"].to_numpy(np.float64), n, out=np.full(len(n), np.nan), where=n > 0)
    p, w = _bt_inputs(pairs, human)
    point = bt.fit(a, b, p, weights=w, prior=prior)
    out = pd.DataFrame({"method": [str(i) for i in point.items], "people": point.scores})
    for name, pref in judges.items():
        p, w = _bt_inputs(pairs, _pref(pairs, pref))
        out[name] = bt.fit(a, b, p, items=point.items, weights=w, prior=prior).scores
    return out


def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sps.ConstantInputWarning)  # a constant axis: NaN, no correlation
        return float(sps.spearmanr(x[ok], y[ok]).statistic), float(sps.kendalltau(x[ok], y[ok]).statistic)


def rank_correlation(
    pairs: pd.DataFrame,
    judges: Mapping[str, Sequence[float] | np.ndarray],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    prior: float = bt.DEFAULT_PRIOR,
) -> pd.DataFrame:
    """Spearman and Kendall between the human and each judge's Bradley–Terry scores (:data:`RANK_COLUMNS`)."""
    bootstrap.check(n_boot, alpha)
    items, human, human_s = method_scores(pairs, None, n_boot=n_boot, seed=seed, prior=prior)
    rows = []
    for name, pref in judges.items():
        _, judge, judge_s = method_scores(pairs, pref, items=items, n_boot=n_boot, seed=seed, prior=prior)
        rho, tau = _correlations(human, judge)
        reps = np.array([_correlations(h, j) for h, j in zip(human_s, judge_s, strict=True)])
        (r_lo, t_lo), (r_hi, t_hi) = bootstrap.percentiles(reps, alpha)
        rows.append(
            {
                "judge": name,
                "spearman": rho,
                "spearman_low": float(r_lo),
                "spearman_high": float(r_hi),
                "kendall": tau,
                "kendall_low": float(t_lo),
                "kendall_high": float(t_hi),
                "n_methods": len(items),
            }
        )
    out = pd.DataFrame(rows, columns=RANK_COLUMNS)
    out.attrs.update({"n_boot": n_boot, "alpha": alpha, "seed": seed, "prior": prior})
    return out


def _bd(scores: np.ndarray, bpp: np.ndarray, anchor: np.ndarray, test: np.ndarray) -> bdrate.BDResult:
    return bdrate.bd_rate(bpp[anchor], scores[anchor], bpp[test], scores[test])


def bd_rate_table(
    pairs: pd.DataFrame,
    judges: Mapping[str, Sequence[float] | np.ndarray],
    method_bpp: Mapping[str, float],
    curves: Mapping[str, Sequence[str]],
    *,
    anchor: str,
    test: str,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    prior: float = bt.DEFAULT_PRIOR,
) -> pd.DataFrame:
    """BD-rate of curve ``test`` against ``anchor`` on the human axis and each judge's (:data:`BD_COLUMNS`).

    ``curves``: curve name (e.g. an encoder family) -> its methods; ``method_bpp``: each method's mean bpp.
    The first row is the human axis (``judge = "people"``).
    """
    bootstrap.check(n_boot, alpha)
    for name in (anchor, test):
        if name not in curves:
            raise ValueError(f"no curve named {name!r} (curves: {', '.join(curves)})")
    items, human, human_s = method_scores(pairs, None, n_boot=n_boot, seed=seed, prior=prior)
    position = {m: i for i, m in enumerate(items)}
    missing = [m for name in (anchor, test) for m in curves[name] if m not in position or m not in method_bpp]
    if missing:
        raise ValueError(f"methods without answers or without a bpp: {', '.join(missing[:5])}")
    ia = np.array([position[m] for m in curves[anchor]], dtype=np.intp)
    it = np.array([position[m] for m in curves[test]], dtype=np.intp)
    bpp = np.array([method_bpp.get(m, np.nan) for m in items], dtype=np.float64)
    axes = [("people", human, human_s)]
    for name, pref in judges.items():
        _, s, samples = method_scores(pairs, pref, items=items, n_boot=n_boot, seed=seed, prior=prior)
        axes.append((name, s, samples))
    rows = []
    for name, s, samples in axes:
        res = _bd(s, bpp, ia, it)
        reps = np.array(
            [(r.value if (r := _bd(row, bpp, ia, it)).ok else np.nan) for row in samples], dtype=np.float64
        )
        low, high = bootstrap.percentiles(reps, alpha)
        rows.append(
            {
                "judge": name,
                "anchor": anchor,
                "test": test,
                "bd_rate": res.value if res.ok else np.nan,
                "ci_low": float(low),
                "ci_high": float(high),
                "n_valid": int(np.isfinite(reps).sum()),
                "reason": res.reason or "",
            }
        )
    out = pd.DataFrame(rows, columns=BD_COLUMNS)
    out.attrs.update({"n_boot": n_boot, "alpha": alpha, "seed": seed, "prior": prior})
    return out


__all__ = [
    "AGREEMENT_COLUMNS",
    "ALL",
    "BD_COLUMNS",
    "CEILING",
    "CROSS_ENCODER",
    "RANK_COLUMNS",
    "SAME_ENCODER",
    "agreeing_answers",
    "agreement_table",
    "bd_rate_table",
    "bpp_range",
    "ceiling_answers",
    "decision",
    "encoder_pairing",
    "method_scores",
    "preference_from_scores",
    "rank_correlation",
    "ratio_bootstrap",
    "score_table",
]
