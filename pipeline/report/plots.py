"""Figures of the report (matplotlib, Agg backend): rate–quality curves per axis and the leaderboard intervals.

Every figure is rendered to PNG (embedded in the HTML page) and SVG (kept next to it for papers and slides).
Labels from the data are passed through :func:`_plain` so a ``$`` in a codec name is shown, not read as math.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from pipeline.report.axes import RATE_COL, Axis
from pipeline.report.leaderboard import Board

DPI = 110


@dataclass(frozen=True)
class Figure:
    """A rendered figure: file stem, caption, PNG and SVG bytes."""

    name: str
    caption: str
    png: bytes
    svg: bytes


def _plain(text: object) -> str:
    return str(text).replace("$", r"\$")


def _render(fig, name: str, caption: str) -> Figure:
    out = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        # a fixed date and no file hash keep the SVG reproducible
        metadata = {"Date": None} if fmt == "svg" else {"Software": "prfeval"}
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return Figure(name, caption, out["png"], out["svg"])


def colours(curves: list[str]) -> dict[str, tuple]:
    """One colour per codec label, stable across figures."""
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    return {c: cmap(k % cmap.N) for k, c in enumerate(sorted(curves))}


def curve_points(images: pd.DataFrame, axis: Axis) -> pd.DataFrame:
    """Per codec label and setting: mean bpp and mean quality over the reference images, by increasing rate."""
    finite = images[
        np.isfinite(images[axis.column].astype(float)) & np.isfinite(images[RATE_COL].astype(float))
    ]
    return (
        finite.groupby(["curve", "setting"], dropna=False)
        .agg(bpp=(RATE_COL, "mean"), quality=(axis.column, "mean"), n=("ref_id", "nunique"))
        .reset_index()
        .sort_values(["curve", "bpp"])
    )


def rate_quality(images: pd.DataFrame, axis: Axis, anchor: str | None) -> Figure | None:
    """Quality against bpp (log scale): each image faintly, each codec's mean over references as a curve."""
    points = curve_points(images, axis)
    if points.empty:
        return None
    palette = colours(sorted(images["curve"].unique()))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for curve, g in images.groupby("curve"):
        ax.scatter(g[RATE_COL], g[axis.column], s=9, alpha=0.25, color=palette[curve], linewidths=0)
    for curve, g in points.groupby("curve"):
        style = {"linewidth": 2.4} if curve == anchor else {"linewidth": 1.6}
        label = _plain(f"{curve} (anchor)" if curve == anchor else curve)
        ax.plot(g["bpp"], g["quality"], marker="o", markersize=4, color=palette[curve], label=label, **style)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("rate [bpp]")
    ax.set_ylabel(_plain(axis.label))
    better = "higher" if axis.higher_is_better else "lower"
    ax.set_title(_plain(f"{axis.title} against rate ({better} is better)"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    caption = (
        f"{axis.title} against bits per pixel: points are images, curves the mean over references per setting"
    )
    return _render(fig, f"rate_{axis.column}", caption)


def leaderboard_intervals(boards: list[Board], alpha: float) -> Figure | None:
    """Bradley–Terry scores with bootstrap intervals, one panel per leaderboard."""
    shown = [b for b in boards if not b.table.empty]
    if not shown:
        return None
    heights = [max(1.2, 0.32 * len(b.table) + 0.8) for b in shown]
    fig, axes = plt.subplots(len(shown), 1, figsize=(6.4, sum(heights)), height_ratios=heights, squeeze=False)
    for ax, b in zip(axes[:, 0], shown, strict=True):
        t = b.table.iloc[::-1]
        y = np.arange(len(t))
        score = t["score"].to_numpy(dtype=float)
        low, high = t["ci_low"].to_numpy(dtype=float), t["ci_high"].to_numpy(dtype=float)
        has_ci = np.isfinite(low) & np.isfinite(high)
        # the interval as a segment (a percentile interval need not contain the point estimate)
        ax.hlines(y[has_ci], low[has_ci], high[has_ci], color="tab:blue", linewidth=1.5)
        ax.plot(low[has_ci], y[has_ci], "|", high[has_ci], y[has_ci], "|", color="tab:blue", markersize=8)
        ax.plot(score, y, "o", color="tab:blue", markersize=4)
        ax.axvline(0.0, color="grey", linewidth=0.8, alpha=0.6)
        ax.set_ylim(-0.6, len(t) - 0.4)
        ax.set_yticks(y, [_plain(f"{r} {i}") for r, i in zip(t["rank"], t["item"], strict=True)], fontsize=8)
        ax.set_title(_plain(f"{b.label}: {b.n_pairs} pairs, {b.n_refs} references"), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"Bradley–Terry score (log-odds) with {100 * (1 - alpha):g}% interval")
    fig.tight_layout()
    return _render(
        fig, "leaderboard", "Bradley–Terry scores per bucket with bootstrap intervals (rank, item)"
    )


def speed_bd_rate(rows: list[dict], anchor: str | None, axis_title: str) -> Figure | None:
    """Each codec's BD-rate against the anchor (first axis) over its median encode speed (MP/s, log scale).

    ``rows`` are the speed rows of the report document (:mod:`pipeline.report.speed`); codecs without a speed or
    a BD-rate are left out (the table still lists them).
    """
    shown = [
        r
        for r in rows
        if r.get("encode_mp_per_s") is not None
        and r.get("bd_rate") is not None
        and np.isfinite(r["encode_mp_per_s"])
        and np.isfinite(r["bd_rate"])
        and r["encode_mp_per_s"] > 0
    ]
    if not shown:
        return None
    palette = colours([str(r["codec"]) for r in rows])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in shown:
        codec = str(r["codec"])
        x, y = r["encode_mp_per_s"], r["bd_rate"]
        lo, hi = r.get("bd_ci_low"), r.get("bd_ci_high")
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            ax.vlines(x, lo, hi, color=palette[codec], linewidth=1.2, alpha=0.7)
        ax.plot(x, y, "o", color=palette[codec], markersize=6)
        label = f"{codec} (anchor)" if codec == anchor else codec
        ax.annotate(_plain(label), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(0.0, color="grey", linewidth=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlabel("encode speed [MP/s], median over images (log scale)")
    ax.set_ylabel(_plain(f"BD-rate vs {anchor} on {axis_title} [%]"))
    ax.set_title("Speed against coding efficiency (right: faster, down: fewer bits)")
    ax.grid(True, which="both", alpha=0.3)
    caption = (
        f"Median encode speed against BD-rate on {axis_title} (anchor {anchor}): one point per codec, "
        "with the BD-rate's interval"
    )
    return _render(fig, "speed_bd_rate", caption)
