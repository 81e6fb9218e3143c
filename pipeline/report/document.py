"""The report as one JSON-able document: what ``leaderboard.json`` holds and what the Markdown and HTML render.

:func:`build` turns the results tables into leaderboards, BD-rates, figures and disagreements. Everything the
renderers print comes from the document (plus the figures' and crops' bytes), so ``leaderboard.md``,
``leaderboard.json`` and ``index.html`` cannot disagree. Non-finite numbers are ``null`` in the document.
``speed`` (median encode/decode speed per codec beside its BD-rate, :mod:`pipeline.report.speed`) is null for
results without the sweep's timing columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.io import storage
from pipeline.io.jsonable import jsonable
from pipeline.report import axes as axes_mod
from pipeline.report import buckets as buckets_mod
from pipeline.report import disagreements as dis_mod
from pipeline.report import leaderboard as lb
from pipeline.report import plots
from pipeline.report import speed as speed_mod
from pipeline.report.items import BY_CHOICES
from pipeline.runs.provenance import utc_now, versions

FORMAT = "prfeval-report"
VERSION = 1
# PRFNet outcomes all within 0.5 ± this: the model expresses no preference worth the name.
FLAT_OUTCOME = 0.05
RUN_FIELDS = ("run_id", "status", "started_at", "finished_at", "model", "checkpoint_sha256", "command")


class ReportInputError(ValueError):
    """Results or options the report cannot use (no results, unknown anchor, bad bucket spec)."""


@dataclass(frozen=True)
class ReportOptions:
    """What the report computes; defaults are those of ``prfeval report``."""

    anchor: str | None = None
    by: str = "codec"
    buckets: str = buckets_mod.DEFAULT_SPEC
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0
    top_disagreements: int = 6
    figures: bool = True  # False: no matplotlib figures (a JSON/Markdown-only report, faster)
    judge: str = "prfnet"  # or a metric: leaderboards on its pairwise preferences (pipeline.scoring.judge)


@dataclass
class Report:
    """The document plus the bytes it refers to: figures (``plots/``) and crops (one per disagreement)."""

    document: dict
    figures: list[plots.Figure] = field(default_factory=list)
    crops: list[dis_mod.Crops] = field(default_factory=list)


def _records(df: pd.DataFrame) -> list[dict]:
    return [jsonable(r) for r in df.to_dict("records")]


def _board_doc(b: lb.Board) -> dict:
    win = b.win_matrix
    return {
        "name": b.name,
        "label": b.label,
        "low": b.low,
        "high": b.high,
        "n_pairs": b.n_pairs,
        "n_refs": b.n_refs,
        "n_images": b.n_images,
        "n_same_item_pairs": b.n_same_item_pairs,
        "notes": b.notes,
        "rows": _records(b.table),
        "win_matrix": {
            "items": [str(i) for i in win.index],
            "values": [[jsonable(float(v)) for v in row] for row in win.to_numpy()],
        },
    }


def _resolve_anchor(requested: str | None, curves: list[str]) -> tuple[str | None, str]:
    """The anchor codec label and how it was chosen; an unknown one lists the codecs there are."""
    if requested is None:
        return axes_mod.default_anchor(curves)
    if requested not in curves:
        raise ReportInputError(
            f"unknown anchor codec {requested!r}; codecs in the results: {', '.join(sorted(curves)) or 'none'}"
        )
    return requested, "--anchor"


def _conversion_counts(values) -> str:
    """``"alpha composited on white (3), greyscale->RGB (1)"``: each kind of conversion and how many had it."""
    counts: dict[str, int] = {}
    for v in values:
        for kind in str(v).split(";") if isinstance(v, str) else ():
            if kind.strip():
                counts[kind.strip()] = counts.get(kind.strip(), 0) + 1
    return ", ".join(f"{k} ({n})" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _conversion_warnings(images: pd.DataFrame | None) -> list[str]:
    """How many scored images, and references, decoding had to convert, by kind (docs/inputs.md)."""
    out = []
    if images is None or not len(images):
        return out
    if "conversions" in images:
        converted = images["conversions"][images["conversions"].fillna("").astype(str).str.strip() != ""]
        if len(converted):
            out.append(
                f"{len(converted)} image(s) were converted before scoring: {_conversion_counts(converted)}"
            )
    if "ref_conversions" in images and "ref_id" in images:
        refs = images.drop_duplicates("ref_id")["ref_conversions"]
        converted = refs[refs.fillna("").astype(str).str.strip() != ""]
        if len(converted):
            out.append(
                f"{len(converted)} reference(s) were converted before scoring: {_conversion_counts(converted)}"
            )
    return out


def _warnings(
    pairs: pd.DataFrame,
    errors: pd.DataFrame,
    run: dict | None,
    images_outside: int,
    images: pd.DataFrame | None = None,
) -> list[str]:
    """What a reader must know before trusting the tables: a flat model, mixed models, failures, gaps, and the
    images decoding converted."""
    out = []
    if len(pairs):
        dev = float(np.max(np.abs(pairs["p_a"].to_numpy(dtype=np.float64) - 0.5)))
        if dev < FLAT_OUTCOME:
            lo, hi = float(pairs["p_a"].min()), float(pairs["p_a"].max())
            out.append(
                f"PRFNet never preferred one image of a pair by more than {50 + 100 * FLAT_OUTCOME:g}:"
                f"{50 - 100 * FLAT_OUTCOME:g} (p_a between {lo:.4f} and {hi:.4f}): the ratings differ by "
                "practically nothing, whatever their intervals say. Is the checkpoint trained?"
            )
    else:
        out.append("the results hold no pairs: there is nothing to rank")
    models = pairs[["model", "checkpoint_sha256"]].drop_duplicates() if len(pairs) else pd.DataFrame()
    if len(models) > 1:
        out.append(f"the pairs come from {len(models)} different model/checkpoint combinations")
    if len(errors):
        out.append(f"{len(errors)} row(s) failed during evaluation (errors/); they are not in this report")
    if run and run.get("status") not in (None, "finished"):
        out.append(f"the run's status is {run.get('status')!r}: the results may be incomplete")
    if images_outside:
        out.append(f"{images_outside} image(s) fall outside every bpp bucket and are in no leaderboard")
    out += _conversion_warnings(images)
    return out


def _speed_doc(images: pd.DataFrame, axes, bd: dict, anchor: str | None) -> dict | None:
    """Median encode/decode speed per codec with its BD-rate on the first axis; None without timing columns."""
    table = speed_mod.table(images)
    if table is None:
        return None
    first = next((a for a in axes if a.column in bd), None)
    rows = speed_mod.with_bd_rate(
        table, bd.get(first.column) if first else None, first and first.column, anchor
    )
    return {
        "bd_axis": first.column if first else None,
        "bd_axis_title": first.title if first else None,
        "statistic": "median over the codec's images",
        "rows": _records(rows),
    }


def build(
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    errors: pd.DataFrame,
    run: dict | None,
    options: ReportOptions,
    *,
    source: str,
) -> Report:
    """The report of these results tables (``source`` is the results URI, shown without credentials)."""
    if options.by not in BY_CHOICES:
        raise ReportInputError(f"--by must be one of {', '.join(BY_CHOICES)}, got {options.by!r}")
    if images.empty:
        raise ReportInputError(f"no results in {storage.display(source)}: images/ holds no rows")
    images = axes_mod.with_curve_labels(images)
    curves = sorted(images["curve"].unique())
    anchor, anchor_choice = _resolve_anchor(options.anchor, curves)
    try:
        buckets = buckets_mod.parse(options.buckets, images["bpp"])
    except buckets_mod.BucketSpecError as e:
        raise ReportInputError(str(e)) from None

    board_opts = lb.BoardOptions(by=options.by, n_boot=options.n_boot, alpha=options.alpha, seed=options.seed)
    labelled_images, labelled_pairs = lb.comparisons(images, pairs, buckets, options.by)
    boards = lb.boards(labelled_images, labelled_pairs, buckets, board_opts)
    images_outside = int((labelled_images["bucket"] < 0).sum())
    pairs_across = int((labelled_pairs["bucket"] < 0).sum())

    axes = axes_mod.axes_for(images, run)  # PSNR, MS-SSIM, the other selected metrics, PRFNet score
    bd = axes_mod.bd_rates(
        images, anchor, n_boot=options.n_boot, alpha=options.alpha, seed=options.seed, axes=axes
    )
    axis_docs = []
    for axis in axes:
        if axis.column in bd:
            axis_docs.append(
                {
                    "axis": axis.column,
                    "title": axis.title,
                    "label": axis.label,
                    "higher_is_better": axis.higher_is_better,
                    "rows": _records(bd[axis.column]),
                }
            )

    speed_doc = _speed_doc(images, axes, bd, anchor)

    figures = []
    if options.figures:
        figures.append(plots.leaderboard_intervals(boards, options.alpha))
        figures += [plots.rate_quality(images, axis, anchor) for axis in axes if axis.column in images]
        if speed_doc is not None:
            figures.append(plots.speed_bd_rate(speed_doc["rows"], anchor, speed_doc["bd_axis_title"]))
        figures = [f for f in figures if f is not None]

    top = dis_mod.find(labelled_images, labelled_pairs, options.top_disagreements)
    crops = [dis_mod.crops(r.ref_uri, r.a_uri, r.b_uri) for r in top.itertuples()]
    dis_docs = []
    for row, crop in zip(_records(top), crops, strict=True):
        for key in ("ref_uri", "a_uri", "b_uri"):
            row[key] = storage.display(str(row[key]))
        box = crop.box
        row["crop"] = None if box is None else dict(zip(("x", "y", "w", "h"), box, strict=True))
        row["crop_error"] = crop.error
        dis_docs.append(row)

    run_doc = {k: run.get(k) for k in RUN_FIELDS if k in run} if run else {}
    if "command" in run_doc and run_doc["command"] is not None:
        run_doc["command"] = storage.redact(str(run_doc["command"]))
    p = pairs["p_a"].to_numpy(dtype=np.float64) if len(pairs) else np.array([])
    document = {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": utc_now(),
        "prfeval": versions().get("prfeval"),
        "results": storage.display(source),
        "run": run_doc,
        "options": {
            "by": options.by,
            "buckets": options.buckets,
            "n_boot": options.n_boot,
            "alpha": options.alpha,
            "seed": options.seed,
            "top_disagreements": options.top_disagreements,
            "anchor": anchor,
            "anchor_choice": anchor_choice,
            **({"judge": options.judge} if options.judge != "prfnet" else {}),
        },
        "counts": {
            "images": len(images),
            "pairs": len(pairs),
            "references": int(images["ref_id"].nunique()),
            "codecs": len(curves),
            "errors": len(errors),
            "images_outside_buckets": images_outside,
            "pairs_across_buckets": pairs_across,
        },
        "models": _records(pairs[["model", "checkpoint_sha256"]].drop_duplicates()) if len(pairs) else [],
        "prf_outcomes": {
            "min": float(p.min()) if p.size else None,
            "max": float(p.max()) if p.size else None,
            "mean_abs_deviation": float(np.mean(np.abs(p - 0.5))) if p.size else None,
        },
        "codecs": curves,
        "buckets": [
            {"name": b.name, "label": b.label, "low": b.low, "high": b.high, "target": b.target}
            for b in buckets
        ],
        "warnings": _warnings(pairs, errors, run, images_outside, images),
        "leaderboards": [_board_doc(b) for b in boards],
        "bd_rate": {"anchor": anchor, "anchor_choice": anchor_choice, "rate": "bpp", "axes": axis_docs},
        "speed": speed_doc,
        "disagreements": dis_docs,
        "figures": [
            {"name": f.name, "caption": f.caption, "png": f"plots/{f.name}.png", "svg": f"plots/{f.name}.svg"}
            for f in figures
        ],
    }
    return Report(jsonable(document), figures, crops)
