"""`prfeval demo`: the embedded default, end to end on this machine.

Sweeps bundled sample photos with real codecs, scores the sweep with PRFNet on a local Ray, writes the report and
prints its leaderboards. Everything lands under ``--output``: ``sweep/`` (decoded images, manifest), ``results/``
(Parquet), ``report/`` (index.html, leaderboard.md, leaderboard.json, plots/).
"""

from __future__ import annotations

import sys

from jobs.common import EXIT_OK, EXIT_ROW_ERRORS, ArgumentParser, UsageError, command
from pipeline.io import storage

DEFAULT_SAMPLES = "samples:astronaut,chelsea,coffee,rocket,motorcycle,immunohistochemistry?max_side=384"
# Four settings per codec: a BD-rate curve needs at least four points.
DEFAULT_CODECS = "jpeg:q=15,35,60,85 webp:q=10,30,55,80 avif:q=20,40,60,80 jxl:d=1,2,3.5,6"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="prfeval demo", description=__doc__.splitlines()[0])
    p.add_argument("--output", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--refs", default=DEFAULT_SAMPLES, help=f"references (default: {DEFAULT_SAMPLES})")
    p.add_argument("--codecs", default=DEFAULT_CODECS, help=f"codec spec (default: {DEFAULT_CODECS!r})")
    p.add_argument("--model", default="prfnet-tiny", help="model (default: prfnet-tiny)")
    p.add_argument("--actors", type=int, default=1, help="scoring actors (default: 1)")
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples of the report (default: 1000)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


@command
def main(argv: list[str] | None = None) -> int:
    from jobs.evaluate import print_summary
    from jobs.report import print_leaderboard
    from pipeline.codecs import SpecError
    from pipeline.report import ReportInputError, ReportOptions, make_report, write
    from pipeline.runs.ray_runtime import ensure_ray
    from pipeline.scoring.driver import EvaluateConfig, ScoringConfig, run_evaluate
    from pipeline.sweep import SweepInputError, run_sweep

    args = build_parser().parse_args(argv)
    if args.n_boot < 1:
        raise UsageError("--n-boot must be at least 1")
    out = args.output
    sweep_out, results_out = storage.join(out, "sweep"), storage.join(out, "results")
    ensure_ray()
    print(f"[1/3] sweep: {args.refs} with {args.codecs}")
    try:
        sweep = run_sweep(args.refs, args.codecs, sweep_out, progress=not args.no_progress)
    except (SpecError, SweepInputError) as e:
        raise UsageError(str(e)) from None
    print(f"      {sweep.n_rows} decoded images ({sweep.n_reused} reused) in {storage.display(sweep_out)}")
    print(f"[2/3] evaluate with {args.model} on a local Ray")
    scoring = ScoringConfig(
        output=results_out,
        model=args.model,
        actors=args.actors,
        allow_roots=[sweep_out, results_out],
        progress=not args.no_progress,
        command="prfeval demo " + " ".join(argv or sys.argv[2:]),
    )
    cfg = EvaluateConfig(
        manifest=storage.join(sweep_out, "manifest.parquet"),
        codecs=storage.join(sweep_out, "codecs.parquet"),
        scoring=scoring,
    )
    summary = run_evaluate(cfg)
    print_summary(summary)
    print(f"judge: prfnet ({args.model}, checkpoint sha256 {summary.checkpoint_sha256 or 'untrained'})")
    print("[3/3] report")
    try:
        report = make_report(results_out, ReportOptions(n_boot=args.n_boot))
    except ReportInputError as e:
        raise UsageError(str(e)) from None
    folder = write(report, out)
    print()
    print_leaderboard(report.document)
    print(f"\nreport: {storage.display(storage.join(folder, 'index.html'))}")
    failed = sweep.exit_code != 0 or summary.errors or summary.failed_groups
    return EXIT_ROW_ERRORS if failed else EXIT_OK
