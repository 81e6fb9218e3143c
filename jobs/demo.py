"""`prfeval demo`: the embedded default, end to end on this machine.

Sweeps bundled sample photos with real codecs, scores the sweep with PRFNet on a local Ray, and prints a short
leaderboard. Everything lands under ``--output``: ``sweep/`` (decoded images, manifest), ``results/`` (Parquet).
"""

from __future__ import annotations

import sys

import pandas as pd

from jobs.common import EXIT_OK, EXIT_ROW_ERRORS, ArgumentParser, UsageError, command
from pipeline import storage

DEFAULT_SAMPLES = "samples:astronaut,chelsea,coffee,rocket,motorcycle,immunohistochemistry?max_side=384"
DEFAULT_CODECS = "jpeg:q=15,35,60,85 webp:q=10,40,75 avif:q=20,50,80 jxl:d=1,2.5,6"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="prfeval demo", description=__doc__.splitlines()[0])
    p.add_argument("--output", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--refs", default=DEFAULT_SAMPLES, help=f"references (default: {DEFAULT_SAMPLES})")
    p.add_argument("--codecs", default=DEFAULT_CODECS, help=f"codec spec (default: {DEFAULT_CODECS!r})")
    p.add_argument("--model", default="prfnet-tiny", help="model (default: prfnet-tiny)")
    p.add_argument("--actors", type=int, default=1, help="scoring actors (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def leaderboard(images: pd.DataFrame) -> pd.DataFrame:
    """Per codec and setting: mean bpp, PSNR, MS-SSIM and PRFNet score over references, best PRFNet first."""
    table = (
        images.groupby(["codec", "setting"], dropna=False)
        .agg(
            refs=("ref_id", "nunique"),
            bpp=("bpp", "mean"),
            psnr=("psnr", "mean"),
            ms_ssim=("ms_ssim", "mean"),
            prf_score=("prf_score", "mean"),
            prf_win_rate=("prf_win_rate", "mean"),
        )
        .reset_index()
        .sort_values("prf_score", ascending=False)
    )
    return table


@command
def main(argv: list[str] | None = None) -> int:
    from jobs.evaluate import print_summary
    from pipeline import results
    from pipeline.codecs import SpecError
    from pipeline.evaluate import EvaluateConfig, run_evaluate
    from pipeline.ray_runtime import ensure_ray
    from pipeline.sweep import SweepInputError, run_sweep

    args = build_parser().parse_args(argv)
    out = args.output
    sweep_out, results_out = storage.join(out, "sweep"), storage.join(out, "results")
    ensure_ray()
    print(f"[1/2] sweep: {args.refs} with {args.codecs}")
    try:
        sweep = run_sweep(args.refs, args.codecs, sweep_out, progress=not args.no_progress)
    except (SpecError, SweepInputError) as e:
        raise UsageError(str(e)) from None
    print(f"      {sweep.n_rows} decoded images ({sweep.n_reused} reused) in {storage.display(sweep_out)}")
    print(f"[2/2] evaluate with {args.model} on a local Ray")
    cfg = EvaluateConfig(
        manifest=storage.join(sweep_out, "manifest.parquet"),
        codecs=storage.join(sweep_out, "codecs.parquet"),
        output=results_out,
        model=args.model,
        actors=args.actors,
        allow_roots=[sweep_out, results_out],
        progress=not args.no_progress,
        command="prfeval demo " + " ".join(argv or sys.argv[2:]),
    )
    summary = run_evaluate(cfg)
    print_summary(summary)
    table = leaderboard(results.read_table(results_out, "images"))
    with pd.option_context(
        "display.width", 120, "display.max_rows", 100, "display.float_format", "{:.3f}".format
    ):
        print(
            "\nleaderboard (mean over references; prf_score: PRFNet Bradley-Terry score within each reference)"
        )
        print(table.to_string(index=False))
    failed = sweep.exit_code != 0 or summary.errors or summary.failed_groups
    return EXIT_ROW_ERRORS if failed else EXIT_OK
