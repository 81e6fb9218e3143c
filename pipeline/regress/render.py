"""`regress`: ``regress.json`` and ``regress.md``, the verdict rendered for machines and for people.

Every string that comes from the data (codec and setting names, URIs, run ids, reference ids) goes through
:mod:`pipeline.io.markdown`, so a codec named ``x|y<script>`` is one escaped cell, not a broken table or HTML.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from pipeline.image.metrics import get_metric
from pipeline.io import markdown as md
from pipeline.regress.match import BASELINE, CANDIDATE, KEY

if TYPE_CHECKING:
    from pipeline.regress.summary import Report


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False)


# ---------------------------------------------------------------------------------------------- Markdown


def _metric_head(name: str) -> str:
    info = get_metric(name)
    return f"Δ{info.display} {info.unit}".rstrip() + ("" if info.higher_is_better else " (lower is better)")


def _table(df: pd.DataFrame, with_bd: bool, metrics: tuple[str, ...] = ()) -> list[str]:
    head = [
        "codec",
        "setting",
        "refs",
        "P(candidate better)",
        "bpp baseline → candidate",
        "bpp change",
        "ΔPSNR dB",
        "ΔMS-SSIM",
        *(_metric_head(m) for m in metrics),
    ]
    if with_bd:
        head.append("BD-rate (PSNR)")
    head.append("verdict")
    rows = []
    for r in df.to_dict("records"):
        cells = [
            md.code(r["codec"]),
            md.cell(r["setting"]) if r["setting"] else "(none)",
            str(r["refs"]),
            md.fmt_ci(r["p"], r["p_low"], r["p_high"], ".3f"),
            f"{md.fmt(r['baseline_bpp'], '.3f')} → {md.fmt(r['candidate_bpp'], '.3f')}",
            md.fmt_ci(r["rate_change"], r["rate_change_low"], r["rate_change_high"], "+.1f", "%", 100.0),
            md.fmt_ci(r["d_psnr"], r["d_psnr_low"], r["d_psnr_high"], "+.2f"),
            md.fmt_ci(r["d_ms_ssim"], r["d_ms_ssim_low"], r["d_ms_ssim_high"], "+.4f"),
            *(md.fmt_ci(r.get(f"d_{m}"), r.get(f"d_{m}_low"), r.get(f"d_{m}_high"), "+.4g") for m in metrics),
        ]
        if with_bd:
            bd = md.fmt_ci(r.get("bd_rate"), r.get("bd_rate_low"), r.get("bd_rate_high"), "+.1f", "%")
            cells.append(
                bd if bd != md.MISSING else f"{md.MISSING} ({md.cell(r.get('bd_rate_reason') or 'n/a')})"
            )
        cells.append("**REGRESSION**" if r["regression"] else ("warning" if r["warnings"] else "ok"))
        rows.append(cells)
    return md.table(head, rows)


def _listing(title: str, df: pd.DataFrame, cols: list[str], max_listed: int) -> list[str]:
    if not len(df):
        return []
    out = [f"**{title}** ({len(df)}):", ""]
    for r in df.head(max_listed).to_dict("records"):
        out.append("- " + ", ".join(f"{c}={md.cell(r[c])}" for c in cols))
    if len(df) > max_listed:
        out.append(f"- … and {len(df) - max_listed} more (all in regress.json)")
    out.append("")
    return out


def _metric_line(name: str, th) -> str:
    """``butteraugli (lower is better, margin 0.05, gated)``: a metric criterion as regress.md lists it."""
    info = get_metric(name)
    unit = f" {info.unit}" if info.unit else ""
    direction = "higher" if info.higher_is_better else "lower"
    gated = "gated" if name in th.gate else "warning only"
    return f"{md.code(name)} ({direction} is better, margin {th.metric_margin(name):g}{unit}, {gated})"


def markdown(rep: Report, max_listed: int = 20) -> str:
    """``regress.md``: the verdict, the regressions and warnings, the tables per codec and setting, coverage."""
    th, ctx, counts = rep.thresholds, rep.context, rep.counts()
    level = round(100 * (1 - th.alpha), 2)
    lines = [f"# prfeval regress: {'REGRESSION' if rep.regression else 'no regression'}", ""]

    def side(name: str) -> str:
        s = ctx.get(name) or {}
        run = f" (run {md.code(s['run_id'])})" if s.get("run_id") else ""
        return f"- {name}: {md.code(s.get('uri', '?'))}{run}"

    lines += [side(BASELINE), side(CANDIDATE)]
    if ctx.get("model"):
        trained = "" if ctx.get("trained_model", True) else ", untrained weights"
        lines.append(
            f"- model: {md.code(ctx['model'])} "
            f"(checkpoint {md.cell(str(ctx.get('checkpoint_sha256') or '?')[:12])}{trained})"
        )
    lines += [
        f"- {counts['matched']} matched images over {counts['references']} references; {level:g}% intervals from "
        f"{th.n_boot} bootstrap replicates over references",
        f"- regression when: {', '.join(th.gate) or 'nothing gated'} (P threshold {th.p_threshold:.3f}, rate "
        f"margin {100 * th.rate_margin:g}%, PSNR margin {th.psnr_margin:g} dB, MS-SSIM margin {th.ms_ssim_margin:g})",
    ]
    if rep.metrics:
        lines.append("- metric criteria: " + "; ".join(_metric_line(m, th) for m in rep.metrics))
    lines.append("")
    regs = rep.regressions()
    if regs:
        lines += ["## Regressions", ""]
        for r in regs:
            where = f"{md.code(r['codec'])} {md.cell(r['setting'])}" if r["codec"] else "coverage"
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
        lines += [f"- {md.code(c)} {md.cell(s)}: {w}" for c, s, w in warnings[:max_listed]]
        lines.append("")
    if len(rep.codecs):
        lines += ["## Per codec", "", *_table(rep.codecs, with_bd=True, metrics=rep.metrics), ""]
        lines += ["## Per setting", "", *_table(rep.settings, with_bd=False, metrics=rep.metrics), ""]
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


__all__ = ["markdown", "to_json"]
