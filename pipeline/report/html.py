"""``index.html``: the report as one self-contained page.

Everything is inline: styles in a ``<style>`` element, figures and crops as ``data:`` PNG URIs, no scripts, no
fonts, no links to anything outside the page. A Content-Security-Policy of ``default-src 'none'`` (images from
``data:`` only) makes the browser refuse any request the page might still try. Every string that comes from the
data goes through :func:`e` (``html.escape``), so a codec called ``<script>`` is shown, not run.
"""

from __future__ import annotations

import base64
from html import escape

from pipeline.report import markdown as md
from pipeline.report.document import Report

OWN_SECTION = ("leaderboard", "speed_bd_rate")  # figures shown in their own section, not under Rate–quality
OPEN_MATRIX_MAX = 12  # win-rate matrices of up to this many items are shown unfolded
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1rem 1.5rem 3rem; color: #1d1d1f; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta, .note, figcaption, footer { color: #555; font-size: 0.9rem; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5rem 0.8rem; margin: 0.5rem 0; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; }
th { background: #f5f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.reason { color: #8a4b00; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.triplet { display: grid; grid-template-columns: repeat(3, minmax(0, 256px)); gap: 0.6rem; }
.triplet img { width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
.triplet figcaption { font-size: 0.8rem; }
nav a { margin-right: 0.9rem; }
code { background: #f5f5f7; padding: 0 0.2rem; }
"""


def e(value: object) -> str:
    """Text from the data, escaped for HTML content and attribute values."""
    return escape(str(value), quote=True)


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table(header: list[str], rows: list[list[str]], numeric: set[int], cls: str, table_id: str = "") -> str:
    """A table of already-formatted cells (each escaped by the caller); ``numeric`` columns right-aligned."""
    attr = f' id="{e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if k in numeric else f"<td>{c}</td>" for k, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{cls}"{attr}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _win_colour(value: float | None) -> str:
    if value is None:
        return "#f5f5f7"
    diff = value - 0.5
    strength = min(1.0, abs(diff) * 2.0)
    rgb = "46,139,87" if diff > 0 else "205,92,92"
    return f"rgba({rgb},{0.7 * strength:.3f})"


def _win_matrix(board: dict) -> str:
    items = board["win_matrix"]["items"]
    if not items:
        return ""
    head = "<th>row beats column</th>" + "".join(f"<th>{e(i)}</th>" for i in items)
    rows = []
    for item, values in zip(items, board["win_matrix"]["values"], strict=True):
        cells = "".join(
            f'<td class="num" style="background:{_win_colour(v)}">{md.num(v, 3)}</td>' for v in values
        )
        rows.append(f"<tr><th>{e(item)}</th>{cells}</tr>")
    return (
        f"<details{' open' if len(items) <= OPEN_MATRIX_MAX else ''}><summary>Win-rate matrix: mean P(row beats column) over their pairs</summary>"
        f'<table class="win-matrix"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        "</details>"
    )


def _board(board: dict, level: str) -> str:
    parts = [
        f'<h3 id="board-{e(board["name"])}">{e(board["label"])}</h3>',
        f'<p class="meta">{board["n_pairs"]} pairs, {board["n_refs"]} reference images, '
        f"{board['n_images']} images</p>",
    ]
    parts += [f'<p class="note">{e(n)}</p>' for n in board["notes"]]
    if board["rows"]:
        rows = md.leaderboard_rows(board, esc=e)
        header = [e(h if h != "CI" else f"{level} CI") for h in md.LEADERBOARD_HEADER]
        parts.append(
            _table(
                header, rows, {0, 2, 4, 5, 6, 7, 8}, "leaderboard", table_id=f"leaderboard-{board['name']}"
            )
        )
        parts.append(_win_matrix(board))
    return "\n".join(parts)


def _bd(doc: dict, level: str) -> str:
    bd = doc["bd_rate"]
    parts = [
        '<h2 id="bd-rate">BD-rate</h2>',
        f"<p>Against <b>{e(bd['anchor'])}</b> ({e(bd['anchor_choice'])}), rate in {e(bd['rate'])}. Per reference "
        "image, log-rate as a PCHIP function of quality, integrated over the quality range both curves cover; "
        f"the codec's value is the mean over images, with a {level} bootstrap interval over images. Negative "
        "means fewer bits than the anchor at equal quality. A codec without a value says why.</p>",
    ]
    for axis in bd["axes"]:
        rows = md.bd_rows(axis, esc=e)
        for row in rows:
            row[-1] = f'<span class="reason">{row[-1]}</span>' if row[-1] else ""
        header = [e(h if h != "CI" else f"{level} CI") for h in md.BD_HEADER]
        parts.append(f"<h3>{e(axis['label'])}</h3>")
        parts.append(_table(header, rows, {1, 3, 4, 5}, "bd-rate", table_id=f"bd-{axis['axis']}"))
    return "\n".join(parts)


def _speed(doc: dict, report: Report) -> str:
    """The speed section: median encode/decode speed per codec beside its BD-rate, and the speed plot."""
    speed = doc.get("speed")
    if not speed:
        return ""
    parts = [
        '<h2 id="speed">Speed</h2>',
        "<p>Median over each codec's images of the sweep's wall-clock encode and decode time (one thread): "
        f"megapixels per second and milliseconds per megapixel, beside the BD-rate against "
        f"<b>{e(doc['bd_rate']['anchor'])}</b>.</p>",
        _table([e(h) for h in md.speed_header(speed)], md.speed_rows(speed, esc=e), {1, 2, 3, 4, 5, 6},
               "speed", table_id="speed-table"),
        _figures(report, ["speed_bd_rate"]),
    ]  # fmt: skip
    return "\n".join(parts)


def _figures(report: Report, names: list[str]) -> str:
    by_name = {f.name: f for f in report.figures}
    out = []
    for name in names:
        fig = by_name.get(name)
        if fig is None:
            continue
        out.append(
            f'<figure id="figure-{e(fig.name)}"><img src="{_png(fig.png)}" alt="{e(fig.caption)}">'
            f"<figcaption>{e(fig.caption)} (also <code>plots/{e(fig.name)}.svg</code>)</figcaption></figure>"
        )
    return "\n".join(out)


def _side(row: dict, side: str) -> str:
    psnr = row[f"psnr_{side.lower()}"]
    psnr_text = "∞" if psnr is None else f"{psnr:.2f}"
    return (
        f"{side}: {e(row[f'{side.lower()}_item'])}, {md.num(row[f'{side.lower()}_bpp'], 3)} bpp, "
        f"PSNR {psnr_text} dB<br><small>{e(row[f'{side.lower()}_id'])}</small>"
    )


def _disagreements(doc: dict, report: Report) -> str:
    rows = doc["disagreements"]
    parts = [
        '<h2 id="disagreements">Where PRFNet and PSNR disagree most</h2>',
        "<p>Pairs where PRFNet prefers one image and PSNR the other, ordered by |p<sub>A</sub> − 0.5| × |ΔPSNR|. "
        "Crops: the same box of the reference (O) and both images, where A and B differ most.</p>",
    ]
    if not rows:
        parts.append('<p class="note">No pair where the two disagree.</p>')
    for k, (row, crop) in enumerate(zip(rows, report.crops, strict=True), start=1):
        parts.append(
            f'<h3 id="disagreement-{k}">{k}. {e(row["ref_id"])}: PRFNet prefers {e(row["prf_prefers"])} '
            f"(P(A closer) = {row['p_a']:.4f}), PSNR prefers {e(row['psnr_prefers'])}</h3>"
        )
        if crop.box is None:
            parts.append(f'<p class="note">No crops: {e(crop.error)}</p>')
            continue
        x, y, w, h = crop.box
        cells = [
            ("O (reference)", crop.o, f"O: {e(row['ref_id'])}<br><small>box x={x} y={y}, {w}×{h} px</small>"),
            ("A", crop.a, _side(row, "A")),
            ("B", crop.b, _side(row, "B")),
        ]
        figs = "".join(
            f'<figure><img src="{_png(data)}" alt="{e(alt)}" width="{2 * w}" height="{2 * h}">'
            f"<figcaption>{caption}</figcaption></figure>"
            for alt, data, caption in cells
        )
        parts.append(f'<div class="triplet">{figs}</div>')
    return "\n".join(parts)


def render(report: Report) -> str:
    """The page's HTML text."""
    doc = report.document
    o, c, run = doc["options"], doc["counts"], doc.get("run") or {}
    level = f"{100 * (1 - o['alpha']):g}%"
    meta = [f"results <code>{e(doc['results'])}</code>"]
    for key, name in (("run_id", "run"), ("model", "model"), ("status", "status")):
        if run.get(key):
            meta.append(f"{name} <code>{e(run[key])}</code>")
    if run.get("checkpoint_sha256"):
        meta.append(f"checkpoint <code>{e(str(run['checkpoint_sha256'])[:12])}</code>")
    buckets = ", ".join(e(b["label"]) for b in doc["buckets"]) or "none"
    body = [
        "<header><h1>prfeval leaderboard</h1>",
        f'<p class="meta">{"; ".join(meta)}</p></header>',
        '<nav><a href="#leaderboards">Leaderboards</a><a href="#bd-rate">BD-rate</a>'
        '<a href="#plots">Rate–quality</a>'
        + ('<a href="#speed">Speed</a>' if doc.get("speed") else "")
        + '<a href="#disagreements">Disagreements</a><a href="#method">Method</a></nav>',
    ]
    body += [f'<p class="warning">Warning: {e(w)}</p>' for w in doc["warnings"]]
    body += [
        f"<p>{e(' '.join(md.summary_lines(doc)))}</p>",
        f'<p class="meta">Buckets ({e(o["buckets"])}): {buckets}. Pairs spanning two buckets, used in no '
        f"leaderboard: {c['pairs_across_buckets']}. Images outside every bucket: {c['images_outside_buckets']}.</p>",
        '<h2 id="leaderboards">Leaderboards</h2>',
        *(_board(b, level) for b in doc["leaderboards"]),
        _figures(report, ["leaderboard"]),
        _bd(doc, level),
        '<h2 id="plots">Rate–quality</h2>',
        _figures(report, [f["name"] for f in doc["figures"] if f["name"] not in OWN_SECTION]),
        *([_speed(doc, report)] if doc.get("speed") else []),
        _disagreements(doc, report),
        '<h2 id="method">Method</h2>',
        "<p>PRFNet scores each pair (O, A, B) of distorted versions of one reference O with p<sub>A</sub> = "
        "P(A is closer to O). A leaderboard counts each pair whose two images fall in the same bpp bucket as a "
        "comparison of A's item with B's, p<sub>A</sub> a fractional win, and fits Bradley–Terry strengths "
        "(P(i beats j) = σ(s<sub>i</sub> − s<sub>j</sub>), a weak Gaussian prior, mean 0). Pairs that share a "
        "reference image are correlated, so intervals come from a bootstrap that resamples reference images, "
        "not pairs. Rank = 1 + the number of items whose lower bound is above this item's upper bound: items "
        "with overlapping intervals share a rank. Within a bucket, an item whose images sit at higher rates has "
        "an advantage; the mean bpp column shows it.</p>",
        f"<footer>Generated {e(doc['generated_at'])} by prfeval {e(doc['prfeval'])}. Data: "
        "<code>leaderboard.json</code>, <code>leaderboard.md</code>, figures in <code>plots/</code>.</footer>",
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>prfeval leaderboard</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
