"""Markdown out: one escaping of text from the data, one table writer, one way to print numbers and intervals.

Text from the data (codec and setting names, URIs, ids, reasons) is never trusted as Markdown. :func:`cell`
escapes it for a table cell or running text: a backslash before each of ``\\ ` * _ [ ] | ~ $`` (so ``|`` cannot
split a cell and nothing turns into emphasis, code, a link or math), entities for ``& < >`` (so no renderer reads
it as HTML) and newlines as spaces (a cell is one line). :func:`code` shows a name in a code span when the name
needs no escaping there, and falls back to :func:`cell` otherwise: inside a code span neither backslashes nor
entities are read, so a name with a backtick, ``|``, ``<``, ``>``, ``&`` or a newline is printed as escaped text.

Numbers: :func:`num` and :func:`interval` round to a number of decimals (no ``-0.00``); :func:`fmt` and
:func:`fmt_ci` take a format spec (``"+.2f"``) and a unit. A missing or non-finite value prints as
:data:`MISSING`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "–"
_BACKSLASHED = set("\\`*_[]|~$")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_UNSAFE_IN_CODE = set("`|<>&\r\n")


def cell(text: object) -> str:
    """Text from the data, escaped for a Markdown table cell or running text, on one line."""
    out = []
    for ch in str(text):
        if ch in _BACKSLASHED:
            out.append("\\" + ch)
        elif ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in "\r\n":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


escape = cell


def code(text: object) -> str:
    """A name from the data as a code span (```jpeg```) when that is safe, else as :func:`cell` text."""
    s = str(text)
    if s and not _UNSAFE_IN_CODE.intersection(s) and s.strip() == s:
        return f"`{s}`"
    return cell(s)


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> list[str]:
    """The lines of a Markdown table of already formatted cells; ``align`` per column (``"---"``, ``"---:"``)."""
    align = list(align) if align is not None else ["---"] * len(header)
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns but {len(align)} alignments")
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def finite(*values: object) -> bool:
    """Whether every value is a finite real number (not None, NaN, NA or infinite)."""
    return all(v is not None and isinstance(v, int | float) and math.isfinite(v) for v in values)


def _round(value: float, digits: int) -> float:
    return round(value, digits) + 0.0  # + 0.0 turns -0.0 into 0.0: no "-0.0000"


def num(value: float | None, digits: int, sign: bool = False) -> str:
    """A rounded number, :data:`MISSING` when missing; ``sign`` always shows + or - (except for zero)."""
    if value is None:
        return MISSING
    value = _round(value, digits)
    if sign and value == 0:
        return f"{value:.{digits}f}"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def interval(low: float | None, high: float | None, digits: int) -> str:
    """``[low, high]`` rounded, :data:`MISSING` when either is missing."""
    if low is None or high is None:
        return MISSING
    return f"[{_round(low, digits):.{digits}f}, {_round(high, digits):.{digits}f}]"


def fmt(value: object, spec: str, unit: str = "") -> str:
    """``value`` in format ``spec`` with ``unit``, :data:`MISSING` when not a finite number."""
    return f"{value:{spec}}{unit}" if finite(value) else MISSING


def fmt_ci(value: object, low: object, high: object, spec: str, unit: str = "", scale: float = 1.0) -> str:
    """``value [low, high]`` (each times ``scale``) in ``spec`` with ``unit``; the value alone without bounds."""
    if not finite(value):
        return MISSING
    if not finite(low, high):
        return fmt(value * scale, spec, unit)
    return f"{value * scale:{spec}}{unit} [{low * scale:{spec}}, {high * scale:{spec}}]"


__all__ = ["MISSING", "cell", "code", "escape", "finite", "fmt", "fmt_ci", "interval", "num", "table"]


def unescape(text: str) -> str:
    """What a Markdown renderer shows of :func:`cell`'s output: backslash escapes and HTML entities undone."""
    import html
    import re

    return html.unescape(re.sub(r"\\([\\`*_\[\]|~$])", r"\1", text))


def read_tables(text: str) -> dict[str | None, list[dict[str, str]]]:
    """The tables of a Markdown document prfeval wrote, by the heading above each, as lists of
    ``{header: shown cell}`` — the inverse of :func:`table`, for checking a document by what a reader sees."""
    import re

    def cells(row: str) -> list[str]:
        return [unescape(c.strip()) for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])]

    tables: dict[str | None, list[dict[str, str]]] = {}
    lines, heading, k = text.splitlines(), None, 0
    while k < len(lines):
        if lines[k].startswith("#"):
            heading = unescape(lines[k].lstrip("#").strip())
        elif lines[k].startswith("|") and k + 1 < len(lines) and lines[k + 1].startswith("|-"):
            header, rows, k = cells(lines[k]), [], k + 2
            while k < len(lines) and lines[k].startswith("|"):
                rows.append(dict(zip(header, cells(lines[k]), strict=True)))
                k += 1
            tables[heading] = rows
            continue
        k += 1
    return tables
