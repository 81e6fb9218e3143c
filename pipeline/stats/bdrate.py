"""Bjøntegaard delta rate (BD-rate) and delta quality (BD-quality, "BD-PSNR") with reasons instead of NaN.

Method (Bjøntegaard, VCEG-M33 / VCEG-AL22, with piecewise cubic Hermite interpolation as in JVET-common practice)
----------------------------------------------------------------------------------------------------------------
For each curve, log-rate is a function of quality, ``L(q) = ln(rate(q))``, interpolated through the points with a
shape-preserving PCHIP (``scipy.interpolate.PchipInterpolator``). Both interpolants are integrated exactly over the
overlapping quality range ``[lo, hi] = [max(min q_A, min q_T), min(max q_A, max q_T)]`` and

    ΔL = (∫ L_T - ∫ L_A) / (hi - lo),      BD-rate = (exp(ΔL) - 1) * 100  [%].

Negative means the test codec needs fewer bits than the anchor for equal quality. The log base does not matter:
PCHIP is homogeneous in its ordinates (scaling log-rates by a constant scales the interpolant), so
``10 ** mean(Δ log10 r) == exp(mean(Δ ln r))`` exactly; natural log is used here, ``log10`` by the ``bjontegaard``
package and the original spreadsheet, with identical results. BD-quality is the mirror: quality as a PCHIP
function of log-rate, averaged over the overlapping log-rate range, ``mean(q_T - q_A)`` in the metric's units
(dB for PSNR); it is invariant to the log base too (PCHIP commutes with affine changes of the abscissa).

Point cleaning and reasons
--------------------------
Per curve, in this order:

1. A point of infinite quality (PSNR of a lossless encode, ``+inf``; ``-inf`` for a lower-is-better metric) is
   dropped, and a note says so: it is a real encode but has no place on an interpolated curve.
2. Any other non-finite value (NaN quality, e.g. MS-SSIM null for a small image; NaN or infinite rate) gives
   the reason ``"non-finite values (<which> curve)"``; a rate <= 0 gives ``"non-positive rate (<which> curve)"``.
3. Exact duplicate points (same rate and quality) are dropped; points are sorted by quality.
4. Fewer than 4 points gives ``"fewer than 4 points (<which> curve: n)"``.
5. Rate must strictly increase with quality; otherwise ``"non-monotonic rate–quality curve (<which> curve)"``
   (this includes equal quality at different rates).
6. Disjoint quality ranges give ``"no overlap in quality"``.

``value`` is ``None`` exactly when ``reason`` is set. For a metric where lower is better, pass
``higher_is_better=False``: quality is negated internally so "better" always means "higher".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator

from pipeline.stats import bootstrap

MIN_POINTS = 4

REASON_FEW_POINTS = "fewer than 4 points"
REASON_NO_OVERLAP = "no overlap in quality"
REASON_NON_MONOTONIC = "non-monotonic rate–quality curve"
REASON_NON_FINITE = "non-finite values"
REASON_NON_POSITIVE_RATE = "non-positive rate"
REASON_NO_ANCHOR = "no anchor curve"


@dataclass(frozen=True)
class BDResult:
    """A BD value (``value``) or why there is none (``reason``), plus notes on dropped points.

    ``value`` is a percentage for :func:`bd_rate` and a quality difference for :func:`bd_quality`; ``interval`` is
    the overlap the curves were integrated over (quality for BD-rate, natural-log rate for BD-quality).
    """

    value: float | None
    reason: str | None = None
    notes: tuple[str, ...] = ()
    interval: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


class _CurveError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Curve:
    rate: np.ndarray  # sorted by quality, > 0
    quality: np.ndarray  # strictly increasing (oriented so higher is better)
    notes: tuple[str, ...]


def _clean(rate, quality, which: str, higher_is_better: bool) -> _Curve:
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"{which} curve: {r.size} rates but {q.size} quality values")
    if not higher_is_better:
        q = -q
    notes = []
    lossless = q == np.inf
    if lossless.any():
        r, q = r[~lossless], q[~lossless]
        notes.append(f"dropped {int(lossless.sum())} point(s) of infinite quality from the {which} curve")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise _CurveError(f"{REASON_NON_FINITE} ({which} curve)")
    if np.any(r <= 0):
        raise _CurveError(f"{REASON_NON_POSITIVE_RATE} ({which} curve)")
    points = np.unique(np.stack([q, r], axis=1), axis=0)  # drops exact duplicates, sorts by quality then rate
    if len(points) < len(q):
        notes.append(f"dropped {len(q) - len(points)} duplicate point(s) from the {which} curve")
    q, r = points[:, 0], points[:, 1]
    if len(q) < MIN_POINTS:
        raise _CurveError(f"{REASON_FEW_POINTS} ({which} curve: {len(q)})")
    if not (np.all(np.diff(q) > 0) and np.all(np.diff(r) > 0)):
        raise _CurveError(f"{REASON_NON_MONOTONIC} ({which} curve)")
    return _Curve(r, q, tuple(notes))


def _clean_both(rate_anchor, q_anchor, rate_test, q_test, higher_is_better) -> tuple[_Curve, _Curve]:
    anchor = _clean(rate_anchor, q_anchor, "anchor", higher_is_better)
    test = _clean(rate_test, q_test, "test", higher_is_better)
    return anchor, test


def _average_difference(x_a: np.ndarray, y_a: np.ndarray, x_t: np.ndarray, y_t: np.ndarray):
    """Mean of PCHIP(x_t, y_t) - PCHIP(x_a, y_a) over the overlap of the x ranges, or None without overlap."""
    lo, hi = max(x_a[0], x_t[0]), min(x_a[-1], x_t[-1])
    if not hi > lo:
        return None, None
    integral_a = PchipInterpolator(x_a, y_a).integrate(lo, hi)
    integral_t = PchipInterpolator(x_t, y_t).integrate(lo, hi)
    return float((integral_t - integral_a) / (hi - lo)), (float(lo), float(hi))


def bd_rate(
    rate_anchor: Sequence[float] | np.ndarray,
    q_anchor: Sequence[float] | np.ndarray,
    rate_test: Sequence[float] | np.ndarray,
    q_test: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool = True,
) -> BDResult:
    """BD-rate of the test curve against the anchor in percent (negative: test needs fewer bits).

    Rates in any positive unit (bpp, bytes) as long as both curves use the same. Raises ``ValueError`` only when a
    curve's rate and quality arrays differ in length; everything else is a ``reason``.
    """
    try:
        anchor, test = _clean_both(rate_anchor, q_anchor, rate_test, q_test, higher_is_better)
    except _CurveError as err:
        return BDResult(None, err.reason)
    notes = anchor.notes + test.notes
    diff, interval = _average_difference(anchor.quality, np.log(anchor.rate), test.quality, np.log(test.rate))
    if diff is None:
        return BDResult(None, REASON_NO_OVERLAP, notes)
    if not higher_is_better:
        interval = (-interval[1], -interval[0])
    return BDResult(float(np.expm1(diff) * 100.0), None, notes, interval)


def bd_quality(
    rate_anchor: Sequence[float] | np.ndarray,
    q_anchor: Sequence[float] | np.ndarray,
    rate_test: Sequence[float] | np.ndarray,
    q_test: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool = True,
) -> BDResult:
    """BD-quality ("BD-PSNR"): mean ``q_test - q_anchor`` at equal rate, in the metric's own units.

    Quality as a PCHIP function of natural-log rate, averaged over the overlapping log-rate range. Same cleaning
    and reasons as :func:`bd_rate` (the overlap reason then concerns rates and reads "no overlap in rate").
    """
    try:
        anchor, test = _clean_both(rate_anchor, q_anchor, rate_test, q_test, higher_is_better)
    except _CurveError as err:
        return BDResult(None, err.reason)
    notes = anchor.notes + test.notes
    diff, interval = _average_difference(np.log(anchor.rate), anchor.quality, np.log(test.rate), test.quality)
    if diff is None:
        return BDResult(None, "no overlap in rate", notes)
    return BDResult(diff if higher_is_better else -diff, None, notes, interval)


def _reason_key(reason: str) -> str:
    """A reason without its per-curve detail, for counting: "fewer than 4 points (test curve: 3)" -> prefix."""
    return reason.split(" (", 1)[0]


def bd_rate_images(
    df: pd.DataFrame,
    *,
    anchor: str,
    codec_col: str = "codec",
    image_col: str = "ref_id",
    rate_col: str = "bpp",
    quality_col: str = "psnr",
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """BD-rate of every codec against ``anchor`` on each reference image: one row per (image, codec).

    Columns: ``image``, ``codec``, ``bd_rate`` (percent, NaN when not computable), ``reason`` (None when
    computable), ``notes`` (semicolon-separated, "" when none). The anchor itself gets no rows. Images where the
    anchor has no points get the reason ``"no anchor curve"``.
    """
    for col in (codec_col, image_col, rate_col, quality_col):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the table (columns: {', '.join(map(str, df.columns))})")
    codecs = [c for c in pd.unique(df[codec_col]) if c != anchor]
    if not (df[codec_col] == anchor).any():
        raise ValueError(f"anchor codec {anchor!r} not in column {codec_col!r} (codecs: {codecs})")
    rows = []
    for image, group in df.groupby(image_col, sort=True, dropna=False):
        by_codec = {codec: g for codec, g in group.groupby(codec_col, sort=False)}
        anchor_rows = by_codec.get(anchor)
        for codec in codecs:
            test_rows = by_codec.get(codec)
            if test_rows is None:
                continue
            if anchor_rows is None:
                result = BDResult(None, REASON_NO_ANCHOR)
            else:
                result = bd_rate(
                    anchor_rows[rate_col].to_numpy(dtype=np.float64),
                    anchor_rows[quality_col].to_numpy(dtype=np.float64),
                    test_rows[rate_col].to_numpy(dtype=np.float64),
                    test_rows[quality_col].to_numpy(dtype=np.float64),
                    higher_is_better=higher_is_better,
                )
            rows.append(
                {
                    "image": image,
                    "codec": codec,
                    "bd_rate": np.nan if result.value is None else result.value,
                    "reason": result.reason,
                    "notes": "; ".join(result.notes),
                }
            )
    return pd.DataFrame(rows, columns=["image", "codec", "bd_rate", "reason", "notes"])


def bd_rate_per_image(
    df: pd.DataFrame,
    *,
    anchor: str,
    codec_col: str = "codec",
    image_col: str = "ref_id",
    rate_col: str = "bpp",
    quality_col: str = "psnr",
    higher_is_better: bool = True,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean per-image BD-rate of each codec against ``anchor``, with a bootstrap interval over images.

    ``df`` has one row per encoded image (the ``images`` results table). For each reference image the codec's
    curve is compared with the anchor's (:func:`bd_rate`); the codec's BD-rate is the arithmetic mean of the
    per-image percentages over the images where it is computable (the usual "average of per-image BD-rates").
    The interval is the cluster bootstrap of :mod:`pipeline.stats.bootstrap` over reference images (the same
    draws for every codec, so codecs stay comparable): the ``alpha/2``, ``1 - alpha/2`` percentiles of the mean.

    One row per codec (anchor excluded), best (most negative) first, columns: ``codec``, ``bd_rate``, ``ci_low``,
    ``ci_high``, ``median``, ``n_images`` (used), ``n_skipped``, ``reasons`` ("reason: count; …" for the skipped
    images, "" when none), ``quality``, ``anchor``. ``bd_rate`` is NaN when no image is usable.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    per_image = bd_rate_images(
        df,
        anchor=anchor,
        codec_col=codec_col,
        image_col=image_col,
        rate_col=rate_col,
        quality_col=quality_col,
        higher_is_better=higher_is_better,
    )
    codecs = [c for c in pd.unique(df[codec_col]) if c != anchor]
    wide = per_image.pivot(index="image", columns="codec", values="bd_rate").reindex(columns=codecs)
    values = wide.to_numpy(dtype=np.float64)  # (images, codecs), NaN where not computable
    low = high = np.full(len(codecs), np.nan)
    if len(values) and len(codecs) and n_boot > 0:
        # one draw of images for every codec (columns share the replicates), so codecs stay comparable
        ivs = bootstrap.cluster_bootstrap(
            values, np.arange(len(values)), n_boot=n_boot, alpha=alpha, seed=seed
        )
        low, high = np.array([iv.low for iv in ivs]), np.array([iv.high for iv in ivs])
    rows = []
    for k, codec in enumerate(codecs):
        mine = per_image[per_image["codec"] == codec]
        ok = mine["bd_rate"].notna()
        skipped = mine.loc[~ok, "reason"].map(_reason_key).value_counts()
        rows.append(
            {
                "codec": codec,
                "bd_rate": float(mine.loc[ok, "bd_rate"].mean()) if ok.any() else np.nan,
                "ci_low": float(low[k]),
                "ci_high": float(high[k]),
                "median": float(mine.loc[ok, "bd_rate"].median()) if ok.any() else np.nan,
                "n_images": int(ok.sum()),
                "n_skipped": int((~ok).sum()),
                "reasons": "; ".join(f"{reason}: {count}" for reason, count in skipped.items()),
                "quality": quality_col,
                "anchor": anchor,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "codec",
            "bd_rate",
            "ci_low",
            "ci_high",
            "median",
            "n_images",
            "n_skipped",
            "reasons",
            "quality",
            "anchor",
        ],
    )
    out = out.sort_values("bd_rate", kind="stable", na_position="last").reset_index(drop=True)
    out.attrs.update({"n_boot": n_boot, "alpha": alpha, "seed": seed})
    return out
