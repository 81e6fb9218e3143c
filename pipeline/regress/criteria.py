"""`regress`: what counts as a regression — the thresholds and the criteria a row is checked against.

Criteria and verdict
--------------------
A row fails a criterion when its interval lies entirely on the wrong side of the margin:

- ``prfnet``: P(candidate better) upper bound < 0.5 − ``margin``;
- ``psnr``: PSNR change upper bound < −``psnr_margin`` dB; ``ms_ssim``: MS-SSIM change upper bound < −``ms_ssim_margin``;
- ``rate``: bpp change lower bound > ``rate_margin`` while no quality gain is established (no metric's lower
  bound above its margin): more bits for equal quality;
- ``bd_rate``: BD-rate lower bound > 100 × ``rate_margin`` percent;
- a *metric criterion* named after each further metric of the run (``ssimulacra2``, ``butteraugli``,
  ``ciede2000``, a plug-in...; see :func:`metric_criteria`): the candidate − baseline change's interval lies
  entirely on the wrong side of the metric's margin — upper bound < −margin when higher is better, lower bound >
  +margin when lower is better (Butteraugli, CIEDE2000), the direction from the metric's metadata
  (:class:`pipeline.image.metrics.MetricInfo`). The margin is the metadata's ``margin`` unless ``metric_margins``
  overrides it.

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

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.image import metrics as metrics_mod

# metrics with criteria of their own above (their margins are psnr_margin and ms_ssim_margin)
CLASSIC_METRICS = ("psnr", "ms_ssim")


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
    metric_margins: tuple[tuple[str, float], ...] = ()  # (metric, margin) overriding the metadata's default

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        for name in ("rate_margin", "psnr_margin", "ms_ssim_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        unknown = [g for g in self.gate if g not in CRITERIA and not _is_metric(g)]
        if unknown:
            raise ValueError(
                f"unknown criteria {unknown}; choose from {', '.join(CRITERIA)} or a metric's name "
                "(prfeval metrics lists them)"
            )
        for name, value in self.metric_margins:
            metrics_mod.get_metric(name)  # an unknown name raises with "did you mean"
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"the margin of {name} must be a number >= 0, got {value}")
        if self.n_boot < 1:
            raise ValueError("n_boot must be >= 1")

    @property
    def p_threshold(self) -> float:
        return 0.5 - self.margin

    def metric_margin(self, name: str) -> float:
        """The change of metric ``name`` tolerated: ``metric_margins``' value, else the metric's default."""
        if name == "psnr":
            return self.psnr_margin
        if name == "ms_ssim":
            return self.ms_ssim_margin
        overrides = dict(self.metric_margins)
        return float(overrides[name]) if name in overrides else float(metrics_mod.get_metric(name).margin)


def _is_metric(name: str) -> bool:
    try:
        metrics_mod.get_metric(name)
    except KeyError:
        return False
    return True


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
        or any(_metric_gain(row, th, m) for m in _row_metrics(row))
    )


def _row_metrics(row: dict) -> list[str]:
    """The metrics with a criterion of their own in a row (its ``d_<name>_low`` columns beyond the classic)."""
    classic = {f"d_{m}_low" for m in CLASSIC_METRICS}
    return [k[2:-4] for k in row if k.startswith("d_") and k.endswith("_low") and k not in classic]


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


def metric_info(name: str) -> metrics_mod.MetricInfo:
    return metrics_mod.get_metric(name)


def _fmt_unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def metric_check(name: str) -> Callable[[dict, Thresholds], str | None]:
    """The check of the metric criterion ``name`` on a row with ``d_<name>``, ``d_<name>_low``/``_high``."""
    info = metric_info(name)
    d = f"d_{name}"

    def check(row: dict, th: Thresholds) -> str | None:
        margin = th.metric_margin(name)
        lo, hi = row.get(f"{d}_low"), row.get(f"{d}_high")
        failed = (_finite(hi) and hi < -margin) if info.higher_is_better else (_finite(lo) and lo > margin)
        if not failed:
            return None
        worse = "lower" if info.higher_is_better else "higher"
        return f"{info.display} {_ci(row[d], lo, hi, '+.4g')}{_fmt_unit(info.unit)} ({worse} is worse)"

    return check


def _metric_gain(row: dict, th: Thresholds, name: str) -> bool:
    """Whether metric ``name`` establishes higher quality for the candidate (its interval beyond the margin)."""
    info, margin = metric_info(name), th.metric_margin(name)
    lo, hi = row.get(f"d_{name}_low"), row.get(f"d_{name}_high")
    return bool(_finite(lo) and lo > margin) if info.higher_is_better else bool(_finite(hi) and hi < -margin)


def metric_criterion(name: str) -> Criterion:
    """The criterion of a further metric: its change's interval beyond its margin, in its direction."""
    info = metric_info(name)
    unit = _fmt_unit(info.unit)
    if info.higher_is_better:
        what = f"{info.display} dropped: CI of the change below -margin{unit}"
    else:
        what = f"{info.display} rose (lower is better): CI of the change above +margin{unit}"
    return Criterion(name, what, metric_check(name))


def metric_criteria(selected: Iterable[str], gate: Iterable[str] = ()) -> tuple[str, ...]:
    """The metrics that get a criterion of their own: each selected metric but PSNR and MS-SSIM (which have
    theirs); a metric of the default selection (PSNR-Y) only when ``gate`` names it, so a default run is judged
    exactly as before."""
    gated = set(gate)
    out = []
    for name in selected:
        if name in CLASSIC_METRICS or name in out:
            continue
        if name in metrics_mod.DEFAULT_METRICS and name not in gated:
            continue
        out.append(name)
    return tuple(out)


def criteria_for(metrics: Iterable[str] = ()) -> dict[str, Criterion]:
    """The classic criteria followed by one criterion per metric of :func:`metric_criteria`."""
    return {**CRITERIA, **{m: metric_criterion(m) for m in metrics if m not in CRITERIA}}


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


__all__ = [
    "CLASSIC_METRICS",
    "CRITERIA",
    "Criterion",
    "Thresholds",
    "criteria_for",
    "metric_criteria",
    "metric_criterion",
]
