"""`prfeval metrics`: the full-reference metrics this installation can compute, with their metadata.

Lists the built-ins and the metrics of installed plug-ins (the ``prfeval.metrics`` entry-point group): name, unit,
direction, range, minimum image size, whether it needs a GPU, implementation and version, and whether it can run
here (e.g. Butteraugli needs libjxl's ``butteraugli_main``). The names are what ``--metrics`` of ``evaluate``,
``regress`` and ``clic`` takes; ``*`` marks the default selection.
"""

from __future__ import annotations

import json
import math

from jobs.common import EXIT_OK, ArgumentParser, add_verbose_option, command


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="prfeval metrics",
        description="List the full-reference metrics --metrics can select, with their metadata.",
    )
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    add_verbose_option(p)
    return p


def _number(x: float) -> str:
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"


def rows() -> list[dict]:
    """One dict per registered metric: its metadata, ``default`` and ``available`` (None, or why not)."""
    from pipeline.image import metrics

    out = []
    for info in metrics.available_metrics():
        row = info.describe()
        row["default"] = info.name in metrics.DEFAULT_METRICS
        row["unavailable"] = info.why_unavailable()
        out.append(row)
    return out


def table(listed: list[dict]) -> str:
    header = ("name", "unit", "better", "range", "min px", "gpu", "implementation", "version", "status")
    body = [
        (
            ("* " if r["default"] else "  ") + r["name"],
            r["unit"] or "-",
            "higher" if r["higher_is_better"] else "lower",
            f"[{_number(r['range'][0])}, {_number(r['range'][1])}]",
            str(r["min_size"]),
            "yes" if r["needs_gpu"] else "no",
            r["implementation"],
            r["version"],
            "ok" if r["unavailable"] is None else f"unavailable: {r['unavailable']}",
        )
        for r in listed
    ]
    widths = [max(len(str(row[k])) for row in [header, *body]) for k in range(len(header) - 1)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in [header, *body]]  # fmt: skip
    return "\n".join([*lines, "", "* the default selection (--metrics): the cheap classic metrics"])


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    listed = rows()
    if args.format == "json":
        print(json.dumps(listed, indent=2, allow_nan=True))
    else:
        print(table(listed))
    return EXIT_OK


__all__ = ["build_parser", "main", "rows", "table"]
