"""The agreement results as figures and one self-contained HTML page (``agreement.html``).

The page uses the report's page helpers (:mod:`pipeline.report.html`: the same style, Content-Security-Policy,
escaping and inline PNGs; no scripts, nothing fetched) and its figure renderer (:mod:`pipeline.report.plots`: PNG
for the page, SVG beside it). Two figures: each judge's agreement with its interval beside the majority-vote
ceiling, and per judge the methods' Bradley–Terry scores from people against those from the judge.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline.human import agreement as ag
from pipeline.io import markdown
from pipeline.report import html as page
from pipeline.report.plots import Figure, _plain, _render

MAX_SCATTERS = 6


def agreement_figure(table: pd.DataFrame, alpha: float = 0.05) -> Figure | None:
    """Agreement of each judge over all rows with its interval; the ceiling as a line."""
    t = table[(table["group"] == ag.ALL) & (table["judge"] != ag.CEILING)].sort_values("agreement")
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, max(1.6, 0.34 * len(t) + 0.9)))
    y = np.arange(len(t))
    low, high = t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float)
    ok = np.isfinite(low) & np.isfinite(high)
    ax.hlines(y[ok], low[ok], high[ok], color="tab:blue", linewidth=1.5)
    ax.plot(t["agreement"].to_numpy(float), y, "o", color="tab:blue", markersize=4)
    ceiling = table[(table["group"] == ag.ALL) & (table["judge"] == ag.CEILING)]
    if len(ceiling):
        c = ceiling.iloc[0]
        ax.axvline(
            c["agreement"], color="tab:red", linewidth=1.0, label=f"majority ceiling {c['agreement']:.3f}"
        )
        if np.isfinite(c["ci_low"]) and np.isfinite(c["ci_high"]):
            ax.axvspan(c["ci_low"], c["ci_high"], color="tab:red", alpha=0.12)
        ax.legend(fontsize=8, loc="lower right")
    ax.axvline(0.5, color="grey", linewidth=0.8, alpha=0.6)
    ax.set_yticks(y, [_plain(j) for j in t["judge"]], fontsize=8)
    ax.set_ylim(-0.6, len(t) - 0.4)
    ax.set_xlabel(f"share of human answers agreed with ({100 * (1 - alpha):g}% interval over originals)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _render(
        fig, "agreement", "Agreement of each judge with people's answers, and the majority-vote ceiling"
    )


def ranking_figure(scores: pd.DataFrame, ranks: pd.DataFrame) -> Figure | None:
    """Per judge: each method's Bradley–Terry score from people (x) and from the judge (y)."""
    judges = [j for j in scores.columns if j not in ("method", "people")][:MAX_SCATTERS]
    if not judges or len(scores) < 2:
        return None
    rho = dict(zip(ranks["judge"], ranks["spearman"], strict=True)) if len(ranks) else {}
    cols = min(3, len(judges))
    rows = (len(judges) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    x = scores["people"].to_numpy(float)
    for ax, judge in zip(axes.flat, judges, strict=False):
        yv = scores[judge].to_numpy(float)
        ax.plot(x, yv, "o", color="tab:blue", markersize=3.5)
        r = rho.get(judge)
        title = judge if r is None or not np.isfinite(r) else f"{judge}\nSpearman {r:.3f}"
        ax.set_title(_plain(title), fontsize=8)
        ax.set_xlabel("people (BT score)", fontsize=8)
        ax.set_ylabel("judge (BT score)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(judges) :]:
        ax.axis("off")
    fig.tight_layout()
    return _render(
        fig,
        "ranking",
        "Methods ranked by people and by each judge (Bradley–Terry scores, one point a method)",
    )


def _agreement_rows(table: pd.DataFrame) -> list[list[str]]:
    return [
        [
            page.e(r.judge),
            page.e(r.group),
            page.e(markdown.fmt_ci(r.agreement, r.ci_low, r.ci_high, ".3f")),
            str(int(r.n_answers)),
            str(int(r.n_pairs)),
            str(int(r.n_missing)),
        ]
        for r in table.itertuples()
    ]


def render(summary: dict, table: pd.DataFrame, ranks: pd.DataFrame, bd: pd.DataFrame | None,
           figures: list[Figure]) -> str:  # fmt: skip
    """The page's HTML text."""
    level = "95%"
    body = [
        "<header><h1>prfeval: agreement with people</h1>",
        f'<p class="meta">triplets <code>{page.e(summary["triplets"])}</code>; results '
        + ", ".join(f"<code>{page.e(r)}</code>" for r in summary["results"])
        + f"; {summary['n_boot']} bootstrap replicates over originals, seed {summary['seed']}</p></header>",
    ]
    left = {k: v for k, v in summary["left_out"].items() if v}
    if left:
        body.append(
            f'<p class="warning">Left out: {page.e(", ".join(f"{k}: {v}" for k, v in left.items()))}</p>'
        )
    body += ['<h2 id="agreement">Agreement</h2>']
    body += [f'<figure><img src="{page._png(f.png)}" alt="{page.e(f.caption)}"><figcaption>{page.e(f.caption)}'
             "</figcaption></figure>" for f in figures if f.name == "agreement"]  # fmt: skip
    body.append(
        page._table(
            [
                "judge",
                "pairs",
                f"agreement ({level} CI)",
                "answers",
                "pair rows",
                "rows without a preference",
            ],
            _agreement_rows(table),
            {2, 3, 4, 5},
            "agreement",
            "agreement-table",
        )
    )
    body.append('<h2 id="methods">Methods</h2>')
    if ranks.empty:
        body.append(f'<p class="note">{page.e(summary.get("rank_note") or "no method-level figures")}</p>')
    else:
        body += [f'<figure><img src="{page._png(f.png)}" alt="{page.e(f.caption)}"><figcaption>'
                 f"{page.e(f.caption)}</figcaption></figure>" for f in figures if f.name == "ranking"]  # fmt: skip
        rows = [
            [
                page.e(r.judge),
                page.e(markdown.fmt_ci(r.spearman, r.spearman_low, r.spearman_high, ".3f")),
                page.e(markdown.fmt_ci(r.kendall, r.kendall_low, r.kendall_high, ".3f")),
                str(int(r.n_methods)),
            ]
            for r in ranks.itertuples()
        ]
        body.append(
            page._table(["judge", "Spearman", "Kendall", "methods"], rows, {1, 2, 3}, "ranks", "rank-table")
        )
    if bd is not None and len(bd):
        rows = [
            [
                page.e(r.judge),
                page.e(f"{r.test} vs {r.anchor}"),
                page.e(markdown.fmt_ci(r.bd_rate, r.ci_low, r.ci_high, "+.1f", "%")),
                page.e(r.reason),
            ]
            for r in bd.itertuples()
        ]
        body += [
            '<h2 id="bd-rate">BD-rate</h2>',
            page._table(["axis", "curves", "BD-rate", "reason"], rows, {2}, "bd"),
        ]
    body += [
        '<h2 id="method">Method</h2>',
        "<p>Each row is an original and an unordered pair of its distorted images with the people's answers for "
        "each. A judge agrees with an answer when it prefers the image the rater chose; a judge's tie counts half. "
        "The majority-vote ceiling is the agreement of a judge that knows every pair's majority (a tied vote "
        "counts half). Intervals come from a bootstrap that resamples originals, shared by every judge. Methods are "
        "ranked by Bradley–Terry fits of the people's labels and of each judge's preferences on the same rows, "
        "weighted by answers; Spearman and Kendall compare the two rankings.</p>",
        "<footer>Data: <code>agreement.json</code>, <code>agreement.md</code>, <code>*.parquet</code>, figures "
        "in <code>plots/</code>.</footer>",
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{page.CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>prfeval agreement</title><style>{page.STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


__all__ = ["agreement_figure", "ranking_figure", "render"]
