"""``leaderboard.md``: the leaderboards and BD-rates of a report document as Markdown tables.

Numbers are rounded for reading (:data:`DIGITS`); ``leaderboard.json`` holds them in full. Text from the data is
escaped by :mod:`pipeline.io.markdown` (the escaping and number formatting ``regress.md`` uses too): ``|`` would
split a table cell, Markdown punctuation would turn into emphasis, code or links, and ``<``/``>``/``&`` become
entities so no Markdown renderer reads a codec name as HTML.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.io.markdown import MISSING, cell, code, interval, num, table

# Decimal places per column kind.
DIGITS = {"score": 4, "win_rate": 3, "bpp": 3, "bd_rate": 2, "speed": 3}


LEADERBOARD_HEADER = ["rank", "item", "score", "CI", "win rate", "pairs", "refs", "images", "mean bpp"]
BD_HEADER = ["codec", "BD-rate %", "CI", "median %", "images", "skipped", "reasons"]
SPEED_HEADER = ["codec", "images", "encode MP/s", "decode MP/s", "encode ms/MP", "decode ms/MP", "BD-rate %"]
SPEED_ALIGN = ["---", "---:", "---:", "---:", "---:", "---:", "---:"]


def leaderboard_rows(board: dict, esc: Callable[[object], str] = cell) -> list[list[str]]:
    """The formatted cells of a leaderboard; ``esc`` escapes text from the data for the target format."""
    d = DIGITS
    return [
        [
            str(r["rank"]),
            esc(r["item"]),
            num(r["score"], d["score"], sign=True),
            interval(r["ci_low"], r["ci_high"], d["score"]),
            num(r["win_rate"], d["win_rate"]),
            str(r["n_comparisons"]),
            str(r["n_refs"]),
            str(r["n_images"]),
            num(r["mean_bpp"], d["bpp"]),
        ]
        for r in board["rows"]
    ]


def bd_rows(axis: dict, esc: Callable[[object], str] = cell) -> list[list[str]]:
    """The formatted cells of a BD-rate table; ``esc`` escapes text from the data for the target format."""
    d = DIGITS["bd_rate"]
    return [
        [
            esc(r["codec"]),
            num(r["bd_rate"], d, sign=True),
            interval(r["ci_low"], r["ci_high"], d),
            num(r["median"], d, sign=True),
            str(r["n_images"]),
            str(r["n_skipped"]),
            esc(r["reasons"]) if r["reasons"] else "",
        ]
        for r in axis["rows"]
    ]


def _sig(value, digits: int) -> str:
    """A speed with ``digits`` significant figures (speeds span orders of magnitude)."""
    if value is None:
        return MISSING
    return f"{value:.{digits}g}"


def speed_rows(speed: dict, esc: Callable[[object], str] = cell) -> list[list[str]]:
    """The formatted cells of the speed table; ``esc`` escapes text from the data for the target format."""
    d = DIGITS["speed"]
    return [
        [
            esc(r["codec"]),
            str(r["n_images"]),
            _sig(r["encode_mp_per_s"], d),
            _sig(r["decode_mp_per_s"], d),
            _sig(r["encode_ms_per_mp"], d),
            _sig(r["decode_ms_per_mp"], d),
            num(r["bd_rate"], DIGITS["bd_rate"], sign=True),
        ]
        for r in speed["rows"]
    ]


def speed_header(speed: dict) -> list[str]:
    title = speed.get("bd_axis_title")
    return [*SPEED_HEADER[:-1], f"BD-rate % ({title})" if title else SPEED_HEADER[-1]]


def speed_markdown(doc: dict) -> list[str]:
    """The speed section (median encode/decode speed per codec and its BD-rate); nothing without timing."""
    speed = doc.get("speed")
    if not speed:
        return []
    out = ["## Speed", ""]
    out.append(
        "Median over each codec's images of the sweep's wall-clock encode and decode time (one thread): "
        f"megapixels per second and milliseconds per megapixel, beside the BD-rate against "
        f"{cell(doc['bd_rate']['anchor'])}."
    )
    out.append("")
    out += table([cell(h) for h in speed_header(speed)], speed_rows(speed), SPEED_ALIGN)
    out.append("")
    return out


def summary_lines(doc: dict) -> list[str]:
    """What was ranked and how: one paragraph, shared by the Markdown file and the demo's printout."""
    o, c = doc["options"], doc["counts"]
    level = f"{100 * (1 - o['alpha']):g}%"
    items = "codecs" if o["by"] == "codec" else "codec settings"
    return [
        f"{c['images']} images of {c['references']} reference images, {c['pairs']} PRFNet pairs, "
        f"{c['errors']} error rows. Items: {items}. Score: Bradley–Terry log-odds (mean 0) fitted to PRFNet's "
        f"P(A closer to the reference) on pairs whose two images fall in the same bpp bucket; {level} intervals "
        f"from {o['n_boot']} bootstrap resamples of reference images (seed {o['seed']}); "
        "rank = 1 + number of items whose lower bound is above this item's upper bound.",
    ]


def board_markdown(board: dict, level: str) -> list[str]:
    """One leaderboard: heading, notes and table."""
    out = [f"## {cell(board['label'])}", ""]
    out.append(f"{board['n_pairs']} pairs, {board['n_refs']} reference images, {board['n_images']} images.")
    out += [f"Note: {cell(n)}" for n in board["notes"]]
    out.append("")
    if board["rows"]:
        header = [h if h != "CI" else f"{level} CI" for h in LEADERBOARD_HEADER]
        out += table(
            header,
            leaderboard_rows(board),
            ["---:", "---", "---:", "---", "---:", "---:", "---:", "---:", "---:"],
        )
        out.append("")
    return out


def render(doc: dict) -> str:
    """The Markdown text of a report document."""
    o = doc["options"]
    level = f"{100 * (1 - o['alpha']):g}%"
    run = doc.get("run") or {}
    lines = ["# prfeval leaderboard", ""]
    source = f"Results: {code(doc['results'])}"
    if run.get("run_id"):
        source += f", run {code(run['run_id'])}"
    if run.get("model"):
        source += f", model {code(run['model'])}"
    lines += [source + ".", ""]
    lines += [*summary_lines(doc), ""]
    lines += [f"> Warning: {cell(w)}" for w in doc["warnings"]]
    if doc["warnings"]:
        lines.append("")
    for board in doc["leaderboards"]:
        lines += board_markdown(board, level)
    bd = doc["bd_rate"]
    lines += [f"## BD-rate against {cell(bd['anchor'])} ({cell(bd['anchor_choice'])})", ""]
    lines.append(
        "Per reference image, log-rate as a PCHIP function of quality over the overlapping quality range; "
        f"the mean over images, {level} interval from a bootstrap over images. Negative: fewer bits than the "
        "anchor for the same quality."
    )
    lines.append("")
    for axis in bd["axes"]:
        lines += [f"### {cell(axis['label'])}", ""]
        header = [h if h != "CI" else f"{level} CI" for h in BD_HEADER]
        lines += table(header, bd_rows(axis), ["---", "---:", "---", "---:", "---:", "---:", "---"])
        lines.append("")
    lines += speed_markdown(doc)
    return "\n".join(lines)


__all__ = [
    "BD_HEADER",
    "DIGITS",
    "LEADERBOARD_HEADER",
    "MISSING",
    "SPEED_HEADER",
    "bd_rows",
    "board_markdown",
    "cell",
    "interval",
    "leaderboard_rows",
    "num",
    "render",
    "speed_header",
    "speed_markdown",
    "speed_rows",
    "summary_lines",
]
