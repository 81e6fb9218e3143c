"""`regress`, the pure part: match two runs, build the triplet groups, the statistics, the verdict and its summary.

No Ray and no I/O here: :mod:`jobs.regress` reads the runs, scores the groups through the one scoring path
(:func:`pipeline.scoring.driver.score_groups`) and hands the resulting tables back to these functions.

Matching
--------
Images of the baseline and the candidate run are matched on ``(ref_id, codec, setting)`` (a missing setting counts
as the empty string). A key present more than once in one run is *ambiguous* and left out. A reference id whose
image differs between the runs (``ref_uri`` not the same location, and ``same_reference`` — a content check the
caller supplies — does not vouch for it either) is a *reference mismatch*: all its images are left out. What
remains is *matched* (in both runs), *only in the baseline* (e.g. the candidate build failed on them) or *only in
the candidate*. All of this is reported; nothing of it is an error.

Triplets
--------
One scoring group per reference: its matched candidate and baseline images, ids prefixed ``candidate:`` and
``baseline:``, each candidate listed right before its baseline, and the explicit pairs
``["candidate:<id>", "baseline:<id>"]``. So ``p_a`` of a pair is P(candidate output closer to the reference than
the baseline output), and a pair of identical images gives exactly 0.5 (PRFNet is antisymmetric). The listing order
also makes the candidate come first under a pairing strategy, so the orientation holds whichever way the scoring
path forms pairs; :func:`triplets` keeps only the requested pairs and reorients any pair found the other way round.

Statistics
----------
Per matched (reference, codec, setting), from the regress run's own tables (the classic metrics are measured
again there, on both sides, by the same code): ``p``; ``d_psnr`` = candidate − baseline PSNR in dB (PSNR capped at
:data:`PSNR_CAP` so lossless outputs compare); ``d_ms_ssim``; ``log_rate`` = ln(candidate bpp / baseline bpp).

Rows per codec (all its matched settings) and per (codec, setting) give the mean of each over the triplets and a
percentile interval at level ``1 - alpha`` from a bootstrap that resamples *references* with replacement
(:func:`cluster_bootstrap`): triplets of one photo are correlated, so the photo is the unit of evidence. The rate
change is the geometric mean, ``exp(mean log_rate) - 1``. Per codec, when both runs have at least 4 settings, the
Bjøntegaard delta rate of the candidate curve against the baseline curve (PSNR axis, per reference, then averaged
with the same bootstrap) measures the rate at equal quality across the whole curve.

Criteria and verdict
--------------------
A row fails a criterion when its interval lies entirely on the wrong side of the margin:

- ``prfnet``: P(candidate better) upper bound < 0.5 − ``margin``;
- ``psnr``: PSNR change upper bound < −``psnr_margin`` dB; ``ms_ssim``: MS-SSIM change upper bound < −``ms_ssim_margin``;
- ``rate``: bpp change lower bound > ``rate_margin`` while no quality gain is established (no metric's lower
  bound above its margin): more bits for equal quality;
- ``bd_rate``: BD-rate lower bound > 100 × ``rate_margin`` percent.

A quality drop at an unchanged setting label fails even when the rate fell as well: the setting no longer means
what it meant, which is what a nightly gate exists to catch; the summary shows the rate change next to it so a
reviewer can tell a rate-control change from a coding-efficiency loss (BD-rate). The criteria in ``gate`` decide
the verdict; the others are still evaluated and reported as warnings. The verdict is ``regression`` when any row
(a codec, or one of its settings) fails a gated criterion, or — with ``fail_on_missing`` — when baseline images are
missing from the candidate. Intervals are per row at level ``1 - alpha``, without a correction for the number of
rows.

While PRFNet runs on untrained weights its P is ≈ 0.5 for every pair, so ``prfnet`` cannot fire; the classic
criteria carry the verdict, and the summary says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pipeline.io import storage
from pipeline.scoring.manifest import group_key
from pipeline.stats import bdrate

BASELINE, CANDIDATE = "baseline", "candidate"
PREFIX = {BASELINE: "baseline:", CANDIDATE: "candidate:"}
KEY = ["ref_id", "codec", "setting"]
INPUT_COLUMNS = ("ref_id", "ref_uri", "dist_id", "dist_uri", "codec", "codec_version", "setting", "bytes")
PSNR_CAP = 100.0  # dB; PSNR of an image equal to its reference is infinite
STATS = ("p", "d_psnr", "d_ms_ssim", "log_rate")
ALL_SETTINGS = "(all)"  # the setting column of per-codec rows
_BOOT_CHUNK = 2**22  # bound on replicates x clusters per bootstrap chunk (32 MB of float64)


# ---------------------------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Criterion:
    """A way a candidate row can be worse than the baseline: ``check`` returns why, or None."""

    name: str
    description: str
    check: Callable[[dict, Thresholds], str | None]


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression; see the module docstring."""

    alpha: float = 0.05
    margin: float = 0.02
    rate_margin: float = 0.02
    psnr_margin: float = 0.1
    ms_ssim_margin: float = 0.001
    gate: tuple[str, ...] = ("prfnet", "psnr", "ms_ssim", "rate", "bd_rate")
    fail_on_missing: bool = False
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        for name in ("rate_margin", "psnr_margin", "ms_ssim_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        unknown = [g for g in self.gate if g not in CRITERIA]
        if unknown:
            raise ValueError(f"unknown criteria {unknown}; choose from {', '.join(CRITERIA)}")
        if self.n_boot < 1:
            raise ValueError("n_boot must be >= 1")

    @property
    def p_threshold(self) -> float:
        return 0.5 - self.margin


def _finite(*values) -> bool:
    return all(v is not None and isinstance(v, int | float) and math.isfinite(v) for v in values)


def _ci(v: float, lo: float, hi: float, spec: str, unit: str = "") -> str:
    return f"{v:{spec}}{unit} [{lo:{spec}}, {hi:{spec}}]"


def _check_prfnet(row: dict, th: Thresholds) -> str | None:
    if _finite(row["p_high"]) and row["p_high"] < th.p_threshold:
        return (
            f"P(candidate better) {_ci(row['p'], row['p_low'], row['p_high'], '.3f')} < {th.p_threshold:.3f}"
        )
    return None


def _check_psnr(row: dict, th: Thresholds) -> str | None:
    if _finite(row["d_psnr_high"]) and row["d_psnr_high"] < -th.psnr_margin:
        return f"PSNR {_ci(row['d_psnr'], row['d_psnr_low'], row['d_psnr_high'], '+.2f')} dB"
    return None


def _check_ms_ssim(row: dict, th: Thresholds) -> str | None:
    if _finite(row["d_ms_ssim_high"]) and row["d_ms_ssim_high"] < -th.ms_ssim_margin:
        return f"MS-SSIM {_ci(row['d_ms_ssim'], row['d_ms_ssim_low'], row['d_ms_ssim_high'], '+.4f')}"
    return None


def _quality_gain(row: dict, th: Thresholds) -> bool:
    """Whether any metric establishes that the candidate's quality is higher (lower bound beyond its margin)."""
    return bool(
        (_finite(row["p_low"]) and row["p_low"] > 0.5 + th.margin)
        or (_finite(row["d_psnr_low"]) and row["d_psnr_low"] > th.psnr_margin)
        or (_finite(row["d_ms_ssim_low"]) and row["d_ms_ssim_low"] > th.ms_ssim_margin)
    )


def _check_rate(row: dict, th: Thresholds) -> str | None:
    lo = row["rate_change_low"]
    if _finite(lo) and lo > th.rate_margin and not _quality_gain(row, th):
        spec = _ci(100 * row["rate_change"], 100 * lo, 100 * row["rate_change_high"], "+.1f", "%")
        return f"bpp {spec} at equal quality"
    return None


def _check_bd_rate(row: dict, th: Thresholds) -> str | None:
    lo = row.get("bd_rate_low")
    if _finite(lo) and lo > 100 * th.rate_margin:
        return f"BD-rate (PSNR) {_ci(row['bd_rate'], lo, row['bd_rate_high'], '+.1f', '%')}"
    return None


CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion(
            "prfnet",
            "PRFNet prefers the baseline output: P(candidate better) CI below 0.5 - margin",
            _check_prfnet,
        ),
        Criterion("psnr", "PSNR dropped: CI of the change below -psnr_margin dB", _check_psnr),
        Criterion("ms_ssim", "MS-SSIM dropped: CI of the change below -ms_ssim_margin", _check_ms_ssim),
        Criterion(
            "rate",
            "more bits at equal quality: bpp change CI above rate_margin, no quality gain",
            _check_rate,
        ),
        Criterion(
            "bd_rate", "worse rate-quality curve: BD-rate (PSNR) CI above 100 x rate_margin %", _check_bd_rate
        ),
    )
}


# ---------------------------------------------------------------------------------------------- matching


@dataclass
class Matching:
    """Two runs' images matched on (ref_id, codec, setting), and everything that did not match."""

    matched: pd.DataFrame  # KEY + baseline_*/candidate_* of ref_uri, dist_id, dist_uri, codec_version, bytes
    only_baseline: pd.DataFrame  # KEY + dist_id
    only_candidate: pd.DataFrame  # KEY + dist_id
    ambiguous: pd.DataFrame  # side + KEY + n
    ref_mismatch: pd.DataFrame  # ref_id, baseline_ref_uri, candidate_ref_uri, images

    def counts(self) -> dict[str, int]:
        return {
            "matched": len(self.matched),
            "references": int(self.matched["ref_id"].nunique()),
            "only_baseline": len(self.only_baseline),
            "only_candidate": len(self.only_candidate),
            "ambiguous": int(self.ambiguous["n"].sum()) if len(self.ambiguous) else 0,
            "ref_mismatch": len(self.ref_mismatch),
        }


def _prepare(df: pd.DataFrame, side: str) -> pd.DataFrame:
    missing = [
        c for c in INPUT_COLUMNS if c not in df.columns and c not in ("codec_version", "setting", "bytes")
    ]
    if missing:
        raise ValueError(f"the {side} images lack column(s) {', '.join(missing)}")
    out = pd.DataFrame({c: df[c] if c in df.columns else None for c in INPUT_COLUMNS}, index=df.index)
    for c in ("ref_id", "codec", "dist_id"):
        out[c] = out[c].astype(str)
    out["setting"] = out["setting"].map(
        lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    )
    out["bytes"] = pd.to_numeric(out["bytes"], errors="coerce").astype("Int64")
    return out.reset_index(drop=True)


def match_runs(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    *,
    same_reference: Callable[[str, str], bool] | None = None,
) -> Matching:
    """Match the images (rows of an images table or manifest) of two runs; see the module docstring.

    ``same_reference(baseline_uri, candidate_uri)`` is asked only when a reference id's two URIs differ (e.g. a
    content-hash comparison); without it, different locations mean different references.
    """
    b, c = _prepare(baseline, BASELINE), _prepare(candidate, CANDIDATE)
    ambiguous = []
    for side, df in ((BASELINE, b), (CANDIDATE, c)):
        dup = df[df.duplicated(KEY, keep=False)]
        if len(dup):
            ambiguous.append(dup.groupby(KEY).size().reset_index(name="n").assign(side=side))
    amb = (
        pd.concat(ambiguous, ignore_index=True) if ambiguous else pd.DataFrame(columns=["side", *KEY, "n"])
    )[["side", *KEY, "n"]]
    amb_keys = set(map(tuple, amb[KEY].to_numpy())) if len(amb) else set()

    refs_b = b.groupby("ref_id", sort=True)["ref_uri"].first()
    refs_c = c.groupby("ref_id", sort=True)["ref_uri"].first()
    mismatch = []
    for ref_id in refs_b.index.intersection(refs_c.index):
        ub, uc = str(refs_b[ref_id]), str(refs_c[ref_id])
        if storage.canonical(ub) == storage.canonical(uc):
            continue
        if same_reference is not None and same_reference(ub, uc):
            continue
        n = int((b["ref_id"] == ref_id).sum() + (c["ref_id"] == ref_id).sum())
        mismatch.append({"ref_id": ref_id, "baseline_ref_uri": ub, "candidate_ref_uri": uc, "images": n})
    ref_mismatch = pd.DataFrame(
        mismatch, columns=["ref_id", "baseline_ref_uri", "candidate_ref_uri", "images"]
    )
    bad_refs = set(ref_mismatch["ref_id"])

    def usable(df: pd.DataFrame) -> pd.DataFrame:
        keys = list(map(tuple, df[KEY].to_numpy()))
        keep = [k not in amb_keys and k[0] not in bad_refs for k in keys]
        return df[keep]

    side_cols = ["ref_uri", "dist_id", "dist_uri", "codec_version", "bytes"]
    bb = usable(b).rename(columns={k: f"baseline_{k}" for k in side_cols})
    cc = usable(c).rename(columns={k: f"candidate_{k}" for k in side_cols})
    merged = bb.merge(cc, on=KEY, how="outer", indicator=True, sort=True)
    matched = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    only_b = merged[merged["_merge"] == "left_only"]
    only_c = merged[merged["_merge"] == "right_only"]
    return Matching(
        matched=matched[[*KEY, *[f"{s}_{k}" for s in (BASELINE, CANDIDATE) for k in side_cols]]],
        only_baseline=only_b[KEY].assign(dist_id=only_b["baseline_dist_id"]).reset_index(drop=True),
        only_candidate=only_c[KEY].assign(dist_id=only_c["candidate_dist_id"]).reset_index(drop=True),
        ambiguous=amb.reset_index(drop=True),
        ref_mismatch=ref_mismatch,
    )


def _plain(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def build_groups(matching: Matching) -> list[dict]:
    """One scoring group per reference (records of :func:`pipeline.scoring.manifest.groups` plus explicit ``pairs``)."""
    out = []
    for ref_id, g in matching.matched.groupby("ref_id", sort=True):
        dists, pairs = [], []
        for r in g.sort_values(["codec", "setting"], kind="stable").to_dict("records"):
            ids = {}
            for side in (CANDIDATE, BASELINE):  # candidate first: A of the pair under any pairing
                ids[side] = PREFIX[side] + r[f"{side}_dist_id"]
                nbytes = _plain(r[f"{side}_bytes"])
                dists.append(
                    {
                        "dist_id": ids[side],
                        "dist_uri": r[f"{side}_dist_uri"],
                        "codec": r["codec"],
                        "codec_version": _plain(r[f"{side}_codec_version"]),
                        "setting": r["setting"] or None,
                        "bytes": None if nbytes is None else int(nbytes),
                        "extras": {"side": side, "source_dist_id": r[f"{side}_dist_id"]},
                    }
                )
            pairs.append([ids[CANDIDATE], ids[BASELINE]])
        out.append(
            {
                "ref_id": str(ref_id),
                "ref_uri": g["baseline_ref_uri"].iloc[0],
                "key": group_key(str(ref_id)),
                "dists": dists,
                "pairs": pairs,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- triplets


def triplets(
    images: pd.DataFrame, pairs: pd.DataFrame, matching: Matching
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scored triplets (one row per matched key) from the regress run's tables, and the matched keys not scored.

    Scored columns: KEY, the two dist ids, ``p`` (P candidate better), ``baseline_``/``candidate_`` bpp, psnr,
    ms_ssim and codec_version, and the per-triplet statistics of :data:`STATS`.
    """
    m = matching.matched.copy()
    m["cid"] = PREFIX[CANDIDATE] + m["candidate_dist_id"]
    m["bid"] = PREFIX[BASELINE] + m["baseline_dist_id"]
    lookup: dict[tuple[str, str], float] = {}
    for a, b, p in zip(pairs["a_id"], pairs["b_id"], pairs["p_a"], strict=True):
        lookup[(a, b)] = float(p)
    p = []
    for cid, bid in zip(m["cid"], m["bid"], strict=True):
        if (cid, bid) in lookup:
            p.append(lookup[(cid, bid)])
        elif (bid, cid) in lookup:
            p.append(1.0 - lookup[(bid, cid)])
        else:
            p.append(np.nan)
    m["p"] = p
    imgs = images.drop_duplicates("dist_id").set_index("dist_id")
    for side, col in ((CANDIDATE, "cid"), (BASELINE, "bid")):
        for metric in ("bpp", "psnr", "ms_ssim"):
            values = m[col].map(imgs[metric]) if metric in imgs else pd.Series(np.nan, index=m.index)
            m[f"{side}_{metric}"] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        m[f"{side}_present"] = m[col].isin(imgs.index)
    ok = m["p"].notna() & m["candidate_present"] & m["baseline_present"]
    cap = lambda s: s.clip(upper=PSNR_CAP)  # noqa: E731
    m["d_psnr"] = cap(m["candidate_psnr"]) - cap(m["baseline_psnr"])
    m["d_ms_ssim"] = m["candidate_ms_ssim"] - m["baseline_ms_ssim"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = m["candidate_bpp"] / m["baseline_bpp"]
        m["log_rate"] = np.where((m["candidate_bpp"] > 0) & (m["baseline_bpp"] > 0), np.log(ratio), np.nan)
    keep = [
        *KEY,
        "baseline_dist_id",
        "candidate_dist_id",
        "baseline_codec_version",
        "candidate_codec_version",
        "p",
        *[f"{s}_{k}" for s in (BASELINE, CANDIDATE) for k in ("bpp", "psnr", "ms_ssim")],
        *STATS[1:],
    ]
    scored = m.loc[ok, keep].reset_index(drop=True)
    unscored = m.loc[~ok, [*KEY, "baseline_dist_id", "candidate_dist_id"]].reset_index(drop=True)
    return scored, unscored


# ---------------------------------------------------------------------------------------------- statistics


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
    """Means of ``values`` (shape ``(n,)`` or ``(n, k)``) with percentile intervals from a cluster bootstrap.

    Each replicate draws as many clusters as there are, uniformly with replacement (a cluster drawn twice counts
    twice), and takes the mean of all values of the drawn clusters; the interval is the ``alpha/2`` and
    ``1 - alpha/2`` percentiles over replicates. Non-finite values are left out column by column. The draws depend
    only on ``seed`` and the sorted set of cluster labels, not on the row order, and are shared by all columns.
    Returns one :class:`Interval` per column (NaN mean and interval for a column without finite values).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must be 1- or 2-dimensional, got shape {v.shape}")
    labels = pd.Series(list(clusters) if not isinstance(clusters, np.ndarray) else clusters, dtype=object)
    if len(labels) != v.shape[0]:
        raise ValueError(f"clusters must have one label per value ({v.shape[0]}), got {len(labels)}")
    k = v.shape[1]
    if v.shape[0] == 0:
        return [Interval(np.nan, np.nan, np.nan, 0, 0) for _ in range(k)]
    codes, uniques = pd.factorize(labels, sort=True)
    n_clusters = len(uniques)
    ok = np.isfinite(v)
    sums = np.zeros((n_clusters, k))
    counts = np.zeros((n_clusters, k))
    np.add.at(sums, codes, np.where(ok, v, 0.0))
    np.add.at(counts, codes, ok.astype(np.float64))
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_boot, k))
    chunk = max(1, _BOOT_CHUNK // n_clusters)
    uniform = np.full(n_clusters, 1.0 / n_clusters)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.multinomial(n_clusters, uniform, size=size).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates[start : start + size] = (draws @ sums) / (draws @ counts)
    out = []
    for j in range(k):
        n = int(counts[:, j].sum())
        if n == 0:
            out.append(Interval(np.nan, np.nan, np.nan, 0, 0))
            continue
        rep = replicates[:, j]
        rep = rep[np.isfinite(rep)]
        low, high = np.percentile(rep, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        mean = float(sums[:, j].sum() / n)
        out.append(Interval(mean, float(low), float(high), n, int((counts[:, j] > 0).sum())))
    return out


def _bd_rate_row(g: pd.DataFrame, th: Thresholds) -> dict:
    """Per-reference BD-rate (PSNR) of the candidate curve against the baseline's, averaged with the bootstrap."""
    values, refs, reasons = [], [], {}
    for ref_id, r in g.groupby("ref_id", sort=True):
        res = bdrate.bd_rate(
            r["baseline_bpp"].to_numpy(),
            r["baseline_psnr"].to_numpy(),
            r["candidate_bpp"].to_numpy(),
            r["candidate_psnr"].to_numpy(),
        )
        if res.ok:
            values.append(res.value)
            refs.append(ref_id)
        else:
            key = res.reason.split(" (", 1)[0]
            reasons[key] = reasons.get(key, 0) + 1
    why = "; ".join(f"{k}: {n} reference(s)" for k, n in reasons.items()) or None
    if not values:
        return {
            "bd_rate": np.nan,
            "bd_rate_low": np.nan,
            "bd_rate_high": np.nan,
            "bd_rate_refs": 0,
            "bd_rate_reason": why,
        }
    (iv,) = cluster_bootstrap(values, refs, n_boot=th.n_boot, alpha=th.alpha, seed=th.seed)
    return {
        "bd_rate": iv.mean,
        "bd_rate_low": iv.low,
        "bd_rate_high": iv.high,
        "bd_rate_refs": iv.n,
        "bd_rate_reason": why,
    }


def _versions(s: pd.Series) -> str:
    return ", ".join(sorted({str(v) for v in s if _plain(v) is not None})) or ""


def _stat_row(codec: str, setting: str, g: pd.DataFrame, th: Thresholds) -> dict:
    ivs = cluster_bootstrap(
        g[list(STATS)].to_numpy(dtype=np.float64),
        g["ref_id"].to_numpy(),
        n_boot=th.n_boot,
        alpha=th.alpha,
        seed=th.seed,
    )
    p, d_psnr, d_ms, rate = ivs
    return {
        "codec": codec,
        "setting": setting,
        "baseline_codec_version": _versions(g["baseline_codec_version"]),
        "candidate_codec_version": _versions(g["candidate_codec_version"]),
        "refs": int(g["ref_id"].nunique()),
        "triplets": len(g),
        "baseline_bpp": float(g["baseline_bpp"].mean()),
        "candidate_bpp": float(g["candidate_bpp"].mean()),
        "baseline_psnr": float(g["baseline_psnr"].clip(upper=PSNR_CAP).mean()),
        "candidate_psnr": float(g["candidate_psnr"].clip(upper=PSNR_CAP).mean()),
        "baseline_ms_ssim": float(g["baseline_ms_ssim"].mean()),
        "candidate_ms_ssim": float(g["candidate_ms_ssim"].mean()),
        "p": p.mean,
        "p_low": p.low,
        "p_high": p.high,
        "d_psnr": d_psnr.mean,
        "d_psnr_low": d_psnr.low,
        "d_psnr_high": d_psnr.high,
        "d_ms_ssim": d_ms.mean,
        "d_ms_ssim_low": d_ms.low,
        "d_ms_ssim_high": d_ms.high,
        "ms_ssim_triplets": d_ms.n,
        "rate_change": math.expm1(rate.mean) if rate.n else np.nan,
        "rate_change_low": math.expm1(rate.low) if rate.n else np.nan,
        "rate_change_high": math.expm1(rate.high) if rate.n else np.nan,
    }


def _judge(row: dict, th: Thresholds) -> dict:
    fired = {name: msg for name, c in CRITERIA.items() if (msg := c.check(row, th))}
    row["reasons"] = [f"{name}: {msg}" for name, msg in fired.items() if name in th.gate]
    row["warnings"] = [f"{name}: {msg}" for name, msg in fired.items() if name not in th.gate]
    row["regression"] = bool(row["reasons"])
    return row


def summarize(scored: pd.DataFrame, th: Thresholds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-codec and per-(codec, setting) rows with intervals and the criteria's verdicts."""
    codec_rows, setting_rows = [], []
    for codec, g in scored.groupby("codec", sort=True):
        row = _stat_row(str(codec), ALL_SETTINGS, g, th)
        if g["setting"].nunique() >= bdrate.MIN_POINTS:
            row.update(_bd_rate_row(g, th))
        else:
            row.update(
                {
                    "bd_rate": np.nan,
                    "bd_rate_low": np.nan,
                    "bd_rate_high": np.nan,
                    "bd_rate_refs": 0,
                    "bd_rate_reason": f"fewer than {bdrate.MIN_POINTS} settings",
                }
            )
        codec_rows.append(_judge(row, th))
        for setting, gs in g.groupby("setting", sort=False):
            setting_rows.append(_judge(_stat_row(str(codec), str(setting), gs, th), th))
    columns = list(codec_rows[0]) if codec_rows else ["codec", "setting", "regression", "reasons", "warnings"]
    codecs = pd.DataFrame(codec_rows, columns=columns)
    settings = pd.DataFrame(setting_rows)
    if len(settings):
        settings = _sort_settings(settings)
    return codecs, settings


def _sort_settings(df: pd.DataFrame) -> pd.DataFrame:
    """Settings in a natural order within a codec: by the baseline's bpp (low to high)."""
    return df.sort_values(["codec", "baseline_bpp", "setting"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- verdict


@dataclass
class Report:
    """The verdict with everything it rests on; :meth:`to_dict` is ``regress.json``, :meth:`to_markdown` the
    summary."""

    thresholds: Thresholds
    codecs: pd.DataFrame
    settings: pd.DataFrame
    matching: Matching
    unscored: pd.DataFrame
    context: dict = field(
        default_factory=dict
    )  # baseline/candidate {uri, run_id}, model, checkpoint, output...
    notes: list[str] = field(default_factory=list)

    @property
    def missing_reason(self) -> str | None:
        n = len(self.matching.only_baseline)
        if self.thresholds.fail_on_missing and n:
            return f"missing: {n} image(s) of the baseline are not in the candidate"
        return None

    @property
    def regression(self) -> bool:
        rows = [self.codecs, self.settings]
        return bool(self.missing_reason) or any(len(d) and d["regression"].any() for d in rows)

    @property
    def verdict(self) -> str:
        return "regression" if self.regression else "pass"

    @property
    def exit_code(self) -> int:
        return 1 if self.regression else 0

    def regressions(self) -> list[dict]:
        """The failing rows: codec, setting (``(all)`` for the codec as a whole) and the reasons."""
        out = []
        for df in (self.codecs, self.settings):
            for r in df[df["regression"]].to_dict("records") if len(df) else []:
                out.append({"codec": r["codec"], "setting": r["setting"], "reasons": r["reasons"]})
        if self.missing_reason:
            out.append({"codec": None, "setting": None, "reasons": [self.missing_reason]})
        return out

    def counts(self) -> dict:
        return {
            **self.matching.counts(),
            "scored": int(self.codecs["triplets"].sum()) if len(self.codecs) else 0,
            "unscored": len(self.unscored),
            "regressions": len(self.regressions()),
        }

    def to_dict(self) -> dict:
        m = self.matching
        limit = 1000
        return _jsonable(
            {
                "verdict": self.verdict,
                "regression": self.regression,
                "exit_code": self.exit_code,
                **self.context,
                "thresholds": {**asdict(self.thresholds), "p_threshold": self.thresholds.p_threshold},
                "criteria": {
                    n: {"description": c.description, "gated": n in self.thresholds.gate}
                    for n, c in CRITERIA.items()
                },
                "counts": self.counts(),
                "regressions": self.regressions(),
                "codecs": self.codecs.to_dict("records"),
                "settings": self.settings.to_dict("records"),
                "coverage": {
                    "only_baseline": m.only_baseline.head(limit).to_dict("records"),
                    "only_candidate": m.only_candidate.head(limit).to_dict("records"),
                    "ambiguous": m.ambiguous.head(limit).to_dict("records"),
                    "ref_mismatch": m.ref_mismatch.head(limit).to_dict("records"),
                    "unscored": self.unscored.head(limit).to_dict("records"),
                    "truncated_at": limit,
                },
                "notes": self.notes,
            }
        )

    def to_markdown(self, max_listed: int = 20) -> str:
        return _markdown(self, max_listed)


def decide(
    scored: pd.DataFrame,
    matching: Matching,
    unscored: pd.DataFrame,
    th: Thresholds,
    *,
    context: dict | None = None,
    notes: Sequence[str] = (),
) -> Report:
    """Statistics and verdict of the scored triplets (see the module docstring)."""
    codecs, settings = summarize(scored, th)
    return Report(th, codecs, settings, matching, unscored, dict(context or {}), list(notes))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is pd.NA or obj is None:
        return None
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False)


# ---------------------------------------------------------------------------------------------- Markdown


def _num(v, spec: str, unit: str = "") -> str:
    return f"{v:{spec}}{unit}" if _finite(v) else "–"


def _num_ci(v, lo, hi, spec: str, unit: str = "", scale: float = 1.0) -> str:
    if not _finite(v):
        return "–"
    if not _finite(lo, hi):
        return _num(v * scale, spec, unit)
    return f"{v * scale:{spec}}{unit} [{lo * scale:{spec}}, {hi * scale:{spec}}]"


def _table(df: pd.DataFrame, with_bd: bool) -> list[str]:
    head = [
        "codec",
        "setting",
        "refs",
        "P(candidate better)",
        "bpp baseline → candidate",
        "bpp change",
        "ΔPSNR dB",
        "ΔMS-SSIM",
    ]
    if with_bd:
        head.append("BD-rate (PSNR)")
    head.append("verdict")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in df.to_dict("records"):
        cells = [
            f"`{r['codec']}`",
            r["setting"] or "(none)",
            str(r["refs"]),
            _num_ci(r["p"], r["p_low"], r["p_high"], ".3f"),
            f"{_num(r['baseline_bpp'], '.3f')} → {_num(r['candidate_bpp'], '.3f')}",
            _num_ci(r["rate_change"], r["rate_change_low"], r["rate_change_high"], "+.1f", "%", 100.0),
            _num_ci(r["d_psnr"], r["d_psnr_low"], r["d_psnr_high"], "+.2f"),
            _num_ci(r["d_ms_ssim"], r["d_ms_ssim_low"], r["d_ms_ssim_high"], "+.4f"),
        ]
        if with_bd:
            bd = _num_ci(r.get("bd_rate"), r.get("bd_rate_low"), r.get("bd_rate_high"), "+.1f", "%")
            cells.append(bd if bd != "–" else f"– ({r.get('bd_rate_reason') or 'n/a'})")
        cells.append("**REGRESSION**" if r["regression"] else ("warning" if r["warnings"] else "ok"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _listing(title: str, df: pd.DataFrame, cols: list[str], max_listed: int) -> list[str]:
    if not len(df):
        return []
    out = [f"**{title}** ({len(df)}):", ""]
    for r in df.head(max_listed).to_dict("records"):
        out.append("- " + ", ".join(f"{c}={r[c]}" for c in cols))
    if len(df) > max_listed:
        out.append(f"- … and {len(df) - max_listed} more (all in regress.json)")
    out.append("")
    return out


def _markdown(rep: Report, max_listed: int) -> str:
    th, ctx, counts = rep.thresholds, rep.context, rep.counts()
    level = round(100 * (1 - th.alpha), 2)
    lines = [f"# prfeval regress: {'REGRESSION' if rep.regression else 'no regression'}", ""]

    def side(name: str) -> str:
        s = ctx.get(name) or {}
        run = f" (run `{s['run_id']}`)" if s.get("run_id") else ""
        return f"- {name}: `{s.get('uri', '?')}`{run}"

    lines += [side(BASELINE), side(CANDIDATE)]
    if ctx.get("model"):
        trained = "" if ctx.get("trained_model", True) else ", untrained weights"
        lines.append(
            f"- model: `{ctx['model']}` (checkpoint {str(ctx.get('checkpoint_sha256') or '?')[:12]}{trained})"
        )
    lines += [
        f"- {counts['matched']} matched images over {counts['references']} references; {level:g}% intervals from "
        f"{th.n_boot} bootstrap replicates over references",
        f"- regression when: {', '.join(th.gate) or 'nothing gated'} (P threshold {th.p_threshold:.3f}, rate "
        f"margin {100 * th.rate_margin:g}%, PSNR margin {th.psnr_margin:g} dB, MS-SSIM margin {th.ms_ssim_margin:g})",
        "",
    ]
    regs = rep.regressions()
    if regs:
        lines += ["## Regressions", ""]
        for r in regs:
            where = f"`{r['codec']}` {r['setting']}" if r["codec"] else "coverage"
            lines.append(f"- {where}: " + "; ".join(r["reasons"]))
        lines.append("")
    warnings = [
        (r["codec"], r["setting"], w)
        for df in (rep.codecs, rep.settings)
        if len(df)
        for r in df.to_dict("records")
        for w in r["warnings"]
    ]
    if warnings:
        lines += ["## Warnings (not gated)", ""]
        lines += [f"- `{c}` {s}: {w}" for c, s, w in warnings[:max_listed]]
        lines.append("")
    if len(rep.codecs):
        lines += ["## Per codec", "", *_table(rep.codecs, with_bd=True), ""]
        lines += ["## Per setting", "", *_table(rep.settings, with_bd=False), ""]
    lines += ["## Coverage", ""]
    lines.append(
        f"matched {counts['matched']}, scored {counts['scored']}, not scored {counts['unscored']}, only in baseline "
        f"{counts['only_baseline']}, only in candidate {counts['only_candidate']}, ambiguous {counts['ambiguous']}, "
        f"references that differ {counts['ref_mismatch']}"
    )
    lines.append("")
    m = rep.matching
    lines += _listing("Only in the baseline (missing from the candidate)", m.only_baseline, KEY, max_listed)
    lines += _listing("Only in the candidate", m.only_candidate, KEY, max_listed)
    lines += _listing(
        "Ambiguous keys (several images for one key)", m.ambiguous, ["side", *KEY, "n"], max_listed
    )
    lines += _listing(
        "References that differ between the runs",
        m.ref_mismatch,
        ["ref_id", "baseline_ref_uri", "candidate_ref_uri"],
        max_listed,
    )
    lines += _listing("Matched but not scored (see the errors table)", rep.unscored, KEY, max_listed)
    if rep.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in rep.notes], ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ = [
    "ALL_SETTINGS",
    "BASELINE",
    "CANDIDATE",
    "CRITERIA",
    "KEY",
    "PREFIX",
    "Criterion",
    "Interval",
    "Matching",
    "Report",
    "Thresholds",
    "build_groups",
    "cluster_bootstrap",
    "decide",
    "match_runs",
    "summarize",
    "to_json",
    "triplets",
]
