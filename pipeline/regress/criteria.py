"""`regress`: what counts as a regression — the thresholds and the criteria a row is checked against.

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

import math
from collections.abc import Callable
from dataclasses import dataclass


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


__all__ = ["CRITERIA", "Criterion", "Thresholds"]
