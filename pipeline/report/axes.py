"""Quality axes of the report (PSNR, MS-SSIM, every other selected metric, PRFNet score) and BD-rate on each.

An axis carries the metadata generic code needs (direction, unit, label); the metrics take theirs from
:data:`pipeline.image.metrics.METRICS` (a plug-in metric that is not installed where the report runs takes it from
the ``metrics`` list of ``run.json``), so a metric whose lower values are better (Butteraugli, CIEDE2000) needs
no special case. :func:`axes_for` gives the axes of one results table: PSNR and MS-SSIM (the default axes, as
before), then each metric column beyond the declared ``images`` columns, then the PRFNet score. The PRFNet score is the image's Bradley–Terry score within its reference group,
so it is comparable only between images of one reference — which is all a per-image BD-rate needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.image import metrics as metrics_mod
from pipeline.image.metrics import METRICS
from pipeline.io import schemas
from pipeline.report import items as item_mod
from pipeline.stats import bdrate

RATE_COL = "bpp"


@dataclass(frozen=True)
class Axis:
    """A quality column of the ``images`` table and how to read it."""

    column: str
    title: str
    higher_is_better: bool
    unit: str = ""

    @property
    def label(self) -> str:
        return f"{self.title} [{self.unit}]" if self.unit else self.title


def _metric_axis(name: str, title: str | None = None) -> Axis:
    info = METRICS[name]
    return Axis(name, title or info.display, info.higher_is_better, info.unit)


PRF_AXIS = Axis("prf_score", "PRFNet score", higher_is_better=True, unit="log-odds")
AXES: tuple[Axis, ...] = (_metric_axis("psnr", "PSNR"), _metric_axis("ms_ssim", "MS-SSIM"), PRF_AXIS)


def metric_axis(name: str, run: dict | None = None) -> Axis | None:
    """The axis of metric column ``name`` from the registry, else from ``run.json``'s metric metadata, else None."""
    try:
        info = metrics_mod.get_metric(name)
    except KeyError:
        described = {m.get("name"): m for m in (run or {}).get("metrics") or [] if isinstance(m, dict)}
        m = described.get(name)
        if m is None or "higher_is_better" not in m:
            return None
        return Axis(name, str(m.get("title") or name), bool(m["higher_is_better"]), str(m.get("unit") or ""))
    return Axis(name, info.display, info.higher_is_better, info.unit)


def axes_for(images: pd.DataFrame, run: dict | None = None) -> tuple[Axis, ...]:
    """The axes of a results table: PSNR and MS-SSIM, each metric column beyond the declared ones, PRFNet score."""
    declared = set(schemas.IMAGES.names)
    extra = []
    for column in images.columns:
        if column in declared:
            continue
        axis = metric_axis(str(column), run)
        if axis is not None:
            extra.append(axis)
    return (*AXES[:-1], *extra, PRF_AXIS)


BD_COLUMNS = ["codec", "bd_rate", "ci_low", "ci_high", "median", "n_images", "n_skipped", "reasons"]


def with_curve_labels(images: pd.DataFrame) -> pd.DataFrame:
    """``images`` with a ``curve`` column: the codec label (name, plus version when a codec has several)."""
    multi = item_mod.multi_version_codecs(images)
    return images.assign(curve=item_mod.curve_labels(images, multi).to_numpy())


def default_anchor(curves: list[str]) -> tuple[str | None, str]:
    """``jpeg`` when present, else the first label alphabetically; with the reason for the choice."""
    if "jpeg" in curves:
        return "jpeg", "default: jpeg is present"
    if not curves:
        return None, "no codecs"
    first = sorted(curves)[0]
    return first, "default: no jpeg in the results, so the first codec alphabetically"


def bd_rates(
    images: pd.DataFrame,
    anchor: str,
    *,
    n_boot: int,
    alpha: float,
    seed: int,
    axes: tuple[Axis, ...] | None = None,
) -> dict[str, pd.DataFrame]:
    """Per axis, the BD-rate of each codec against ``anchor`` (``images`` from :func:`with_curve_labels`).

    Each table has the columns :data:`BD_COLUMNS`, best (most negative) first; a codec with no computable value
    has a NaN ``bd_rate`` and its per-image reasons.
    """
    out = {}
    for axis in axes_for(images) if axes is None else axes:
        if axis.column not in images.columns:
            continue
        table = bdrate.bd_rate_per_image(
            images,
            anchor=anchor,
            codec_col="curve",
            image_col="ref_id",
            rate_col=RATE_COL,
            quality_col=axis.column,
            higher_is_better=axis.higher_is_better,
            n_boot=n_boot,
            alpha=alpha,
            seed=seed,
        )
        out[axis.column] = table[BD_COLUMNS].reset_index(drop=True)
    return out
