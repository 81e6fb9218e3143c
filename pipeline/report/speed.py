"""Codec speed in the report: median encode and decode throughput per codec, beside its BD-rate.

``prfeval sweep`` times every encode and decode (``encode_ms``, ``decode_ms`` wall time, ``encode_cpu_ms``,
``decode_cpu_ms``, ``encode_mp_per_s``, ``decode_mp_per_s``; :data:`pipeline.io.schemas.SWEEP_MANIFEST`) and
``evaluate`` carries those columns into ``images``. Per codec label (the BD-rate's ``curve``) the report shows the
median over its images of megapixels per second and of milliseconds per megapixel, for encoding and decoding
(the median, because one slow image — a cold cache, a busy core — should not move a codec's number). Results
without these columns (a manifest not made by ``sweep``) have no speed section and no error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.io import schemas

COLUMNS = schemas.TIMING_COLUMNS
ROW_COLUMNS = [
    "codec",
    "n_images",
    "encode_mp_per_s",
    "decode_mp_per_s",
    "encode_ms_per_mp",
    "decode_ms_per_mp",
    "encode_cpu_ms_per_mp",
    "decode_cpu_ms_per_mp",
]


def _numeric(images: pd.DataFrame, column: str) -> pd.Series:
    if column not in images:
        return pd.Series(np.nan, index=images.index, dtype=np.float64)
    values = pd.to_numeric(images[column], errors="coerce").astype(np.float64)
    return values.where(np.isfinite(values) & (values > 0))


def per_image(images: pd.DataFrame) -> pd.DataFrame:
    """Per image: ``curve``, MP/s and ms/MP of encode and decode (wall), and CPU ms/MP (NaN where unknown).

    Throughput comes from ``*_mp_per_s`` when present, else from the wall time and the image size; ms/MP is its
    inverse, so the two always agree.
    """
    mp = _numeric(images, "width") * _numeric(images, "height") / 1e6
    out = pd.DataFrame({"curve": images["curve"].to_numpy()}, index=images.index)
    for step in ("encode", "decode"):
        rate = _numeric(images, f"{step}_mp_per_s")
        from_ms = mp * 1000.0 / _numeric(images, f"{step}_ms")
        rate = rate.fillna(from_ms)
        out[f"{step}_mp_per_s"] = rate
        out[f"{step}_ms_per_mp"] = 1000.0 / rate
        out[f"{step}_cpu_ms_per_mp"] = _numeric(images, f"{step}_cpu_ms") / mp
    return out


def has_speed(images: pd.DataFrame) -> bool:
    """Whether the images carry any timing at all (a sweep's columns with at least one value)."""
    present = [c for c in COLUMNS if c in images.columns]
    return bool(present) and bool(
        per_image(images)[["encode_mp_per_s", "decode_mp_per_s"]].notna().any().any()
    )


def table(images: pd.DataFrame) -> pd.DataFrame | None:
    """Per codec label (``images`` from :func:`pipeline.report.axes.with_curve_labels`): the medians of
    :data:`ROW_COLUMNS`, fastest encoder first; None when the results carry no timing."""
    if not has_speed(images):
        return None
    rows = per_image(images)
    medians = rows.groupby("curve").median(numeric_only=True)
    counts = rows.groupby("curve")["encode_mp_per_s"].count().rename("n_images")
    out = medians.join(counts).reset_index().rename(columns={"curve": "codec"})
    out["n_images"] = out["n_images"].astype(np.int64)
    out = out.sort_values(["encode_mp_per_s", "codec"], ascending=[False, True], na_position="last")
    return out[ROW_COLUMNS].reset_index(drop=True)


def with_bd_rate(
    speed: pd.DataFrame, bd: pd.DataFrame | None, axis: str | None, anchor: str | None
) -> pd.DataFrame:
    """The speed table with the BD-rate (and its interval) on the report's first axis (``axis``) beside it; the
    anchor's BD-rate is 0 by definition."""
    out = speed.copy()
    out["bd_axis"] = axis
    if bd is None or bd.empty:
        out[["bd_rate", "bd_ci_low", "bd_ci_high"]] = np.nan
    else:
        values = bd.set_index("codec")[["bd_rate", "ci_low", "ci_high"]]
        values = values.rename(columns={"ci_low": "bd_ci_low", "ci_high": "bd_ci_high"})
        out = out.join(values, on="codec")
    out.loc[out["codec"] == anchor, ["bd_rate", "bd_ci_low", "bd_ci_high"]] = 0.0
    return out


__all__ = ["COLUMNS", "ROW_COLUMNS", "has_speed", "per_image", "table", "with_bd_rate"]
