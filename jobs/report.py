"""`prfeval report`: leaderboards with confidence intervals, BD-rate, plots and disagreements from a results folder.

Writes ``<output>/report/``: ``index.html`` (self-contained), ``leaderboard.md``, ``leaderboard.json`` and
``plots/`` (PNG and SVG), then prints the leaderboards and where the page is.
"""

from __future__ import annotations

from jobs.common import EXIT_OK, ArgumentParser, UsageError, command
from pipeline.io import storage
from pipeline.report.buckets import DEFAULT_SPEC
from pipeline.report.items import BY_CHOICES


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="prfeval report",
        description="Leaderboard report from a results folder: Bradley–Terry ratings of codecs per bpp bucket "
        "with bootstrap intervals over reference images, BD-rate against an anchor on PSNR, MS-SSIM, every other "
        "metric measured and the PRFNet score, rate–quality plots, encode/decode speed per codec (results of a "
        "sweep) and the pairs where PRFNet and PSNR disagree most. Writes <output>/report/.",
    )
    p.add_argument("--results", required=True, help="results folder URI (the --output of prfeval evaluate)")
    p.add_argument("--output", required=True, help="folder URI that receives report/")
    p.add_argument(
        "--anchor", help="BD-rate anchor codec (default: jpeg if present, else the first alphabetically)"
    )
    p.add_argument(
        "--by",
        choices=BY_CHOICES,
        default="codec",
        help="rank codecs, or each codec setting (default: codec)",
    )
    p.add_argument(
        "--buckets",
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help="bpp buckets: comma-separated edges (e.g. 0,0.25,0.5,1,inf), 'clic' (0.075/0.15/0.3 bpp within a "
        f"factor sqrt 2), 'clic:TOL' (within a relative tolerance) or 'quantiles:N' (default: {DEFAULT_SPEC})",
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument(
        "--alpha", type=float, default=0.05, help="1 - interval level (default: 0.05, 95%% intervals)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument(
        "--top-disagreements",
        type=int,
        default=6,
        help="pairs shown where PRFNet and PSNR disagree (default: 6)",
    )
    p.add_argument(
        "--judge",
        default="prfnet",
        help="whose pairwise preferences the leaderboards fit: prfnet (default) or a metric of the images "
        "(e.g. psnr, ms_ssim, butteraugli: 1 when A is better by the metric's direction, 0.5 on ties)",
    )
    return p


def print_leaderboard(document: dict) -> None:
    """The warnings and every leaderboard as Markdown tables, for a terminal."""
    from pipeline.report import markdown

    level = f"{100 * (1 - document['options']['alpha']):g}%"
    for warning in document["warnings"]:
        print(f"warning: {warning}")
    print("\n".join(markdown.summary_lines(document)))
    for board in document["leaderboards"]:
        print()
        print("\n".join(markdown.board_markdown(board, level)).rstrip())


@command
def main(argv: list[str] | None = None) -> int:
    from pipeline.report import ReportInputError, ReportOptions, make_report, write

    args = build_parser().parse_args(argv)
    if args.n_boot < 1:
        raise UsageError("--n-boot must be at least 1")
    if not 0 < args.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    if args.top_disagreements < 0:
        raise UsageError("--top-disagreements must be >= 0")
    options = ReportOptions(
        anchor=args.anchor,
        by=args.by,
        buckets=args.buckets,
        n_boot=args.n_boot,
        alpha=args.alpha,
        seed=args.seed,
        top_disagreements=args.top_disagreements,
        judge=args.judge,
    )
    try:
        report = make_report(args.results, options)
    except ReportInputError as e:
        raise UsageError(str(e)) from None
    folder = write(report, args.output)
    print_leaderboard(report.document)
    print(f"\nreport: {storage.display(storage.join(folder, 'index.html'))}")
    return EXIT_OK
