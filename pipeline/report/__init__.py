"""The leaderboard report: from a results folder to ``report/`` (index.html, leaderboard.md/json, plots/).

Pure pandas and matplotlib, no Ray. The parts, one module each:

- :mod:`~pipeline.report.buckets`: bpp buckets (quantiles, CLIC targets, explicit edges);
- :mod:`~pipeline.report.items`: what is ranked (codecs or codec settings) and how it is labelled;
- :mod:`~pipeline.report.leaderboard`: Bradley–Terry ratings per bucket with reference-image bootstrap intervals;
- :mod:`~pipeline.report.axes`: quality axes and BD-rate against an anchor on each;
- :mod:`~pipeline.report.disagreements`: pairs where PRFNet and PSNR disagree most, with crops;
- :mod:`~pipeline.report.plots`: figures;
- :mod:`~pipeline.report.document`: everything above as one JSON-able document;
- :mod:`~pipeline.report.markdown`, :mod:`~pipeline.report.html`: renderings of the document.
"""

from __future__ import annotations

import json

from pipeline.io import storage
from pipeline.report.document import Report, ReportInputError, ReportOptions, build
from pipeline.scoring import results
from pipeline.scoring.judge import judge_pairs

__all__ = ["Report", "ReportInputError", "ReportOptions", "build", "make_report", "report_dir", "write"]

FILES = ("index.html", "leaderboard.md", "leaderboard.json")


def report_dir(output: str) -> str:
    """Where the report of ``--output`` goes: ``<output>/report``."""
    return storage.join(output, "report")


def make_report(results_uri: str, options: ReportOptions) -> Report:
    """Read a results folder (any URI) and build its report."""
    images = results.read_table(results_uri, "images")
    if images.empty:
        raise ReportInputError(
            f"no results in {storage.display(results_uri)}: images/ holds no Parquet rows "
            "(is this the --output of prfeval evaluate?)"
        )
    pairs = results.read_table(results_uri, "pairs")
    try:
        pairs = judge_pairs(images, pairs, options.judge)
    except ValueError as e:
        raise ReportInputError(str(e)) from None
    errors = results.read_table(results_uri, "errors")
    run = results.read_run(results_uri)
    return build(images, pairs, errors, run, options, source=results_uri)


def write(report: Report, output: str) -> str:
    """Write ``report/`` under ``output``; returns the report folder's URI."""
    from pipeline.report import html, markdown

    folder = report_dir(output)
    for fig in report.figures:
        storage.write_bytes(storage.join(folder, "plots", f"{fig.name}.png"), fig.png)
        storage.write_bytes(storage.join(folder, "plots", f"{fig.name}.svg"), fig.svg)
    text = json.dumps(report.document, indent=2, ensure_ascii=False, allow_nan=False)
    storage.write_text(storage.join(folder, "leaderboard.json"), text + "\n")
    storage.write_text(storage.join(folder, "leaderboard.md"), markdown.render(report.document))
    storage.write_text(storage.join(folder, "index.html"), html.render(report))
    return folder
