"""`prfeval evaluate`: score a manifest with PRFNet on a Ray actor pool and write the results tables."""

from __future__ import annotations

import shlex
import sys

from jobs.common import EXIT_OK, EXIT_ROW_ERRORS, EXIT_USAGE, ArgumentParser, UsageError, command
from pipeline import images, pairing, storage


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="prfeval evaluate",
        description="Score every reference group of a manifest with PRFNet; write images/, pairs/, errors/ and "
        "run.json under --output. Rerunning the same command resumes: finished groups are skipped.",
    )
    p.add_argument("--manifest", required=True, help="manifest URI (CSV with a header, or Parquet)")
    p.add_argument("--output", required=True, help="results folder URI (local path or s3://...)")
    p.add_argument("--codecs", help="codec metadata table (CSV/Parquet) keyed by codec, codec_version")
    p.add_argument("--model", default="prfnet-tiny", help="registered model name (default: prfnet-tiny)")
    p.add_argument("--checkpoint", help="checkpoint URI (safetensors); default: the packaged one for --model")
    p.add_argument(
        "--pairs", choices=pairing.STRATEGIES, default="all", help="pairing strategy (default: all)"
    )
    p.add_argument(
        "--match-tolerance",
        type=float,
        default=pairing.DEFAULT_MATCH_TOLERANCE,
        help="relative bpp tolerance of --pairs matched (default: 0.15)",
    )
    p.add_argument(
        "--actors", type=int, default=1, help="scoring actors, one model replica each (default: 1)"
    )
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor, fractional allowed")
    p.add_argument(
        "--cpus-per-actor", type=float, help="CPUs reserved per actor (default: chosen from the cluster)"
    )
    p.add_argument("--batch-size", type=int, help="patches per model call (default: 16 on CPU, 128 on CUDA)")
    p.add_argument("--patch", type=int, help="patch size in pixels (default: the model's)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast precision")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA when present"
    )
    p.add_argument(
        "--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS, help="decompression-bomb limit"
    )
    p.add_argument(
        "--allow-root",
        action="append",
        dest="allow_roots",
        metavar="PREFIX",
        help="a location images may be read from (repeatable; default: the manifest's folder and the output)",
    )
    p.add_argument("--retry-errors", action="store_true", help="score again the groups that recorded errors")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=900.0,
        help="stop with a clear message when no reference group finishes for this many seconds (default: 900; "
        "0 waits forever, e.g. for an autoscaler that is slow to bring GPUs)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    p.add_argument(
        "--registry",
        help="runs registry root URI to append this run to (default: $PRFEVAL_REGISTRY; none: not kept)",
    )
    return p


@command
def main(argv: list[str] | None = None) -> int:
    from model import UnknownModelError
    from pipeline.evaluate import EvaluateConfig, OutputConflict, ResourceError, StalledError, run_evaluate
    from pipeline.manifest import ManifestError

    args = build_parser().parse_args(argv)
    if args.actors < 1:
        raise UsageError("--actors must be at least 1")
    if args.gpus_per_actor < 0:
        raise UsageError("--gpus-per-actor must be >= 0")
    roots = args.allow_roots or [storage.parent(args.manifest), args.output]
    cfg = EvaluateConfig(
        manifest=args.manifest,
        output=args.output,
        codecs=args.codecs,
        model=args.model,
        checkpoint=args.checkpoint,
        pairs=args.pairs,
        match_tolerance=args.match_tolerance,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
        patch=args.patch,
        precision=args.precision,
        device=args.device,
        max_pixels=args.max_pixels,
        allow_roots=roots,
        retry_errors=args.retry_errors,
        stall_timeout=args.stall_timeout or None,
        progress=not args.no_progress,
        command=shlex.join(["prfeval", "evaluate", *(argv if argv is not None else sys.argv[2:])]),
    )
    try:
        summary = run_evaluate(cfg)
    except (ManifestError, OutputConflict, ResourceError, UnknownModelError) as e:
        raise UsageError(str(e)) from None
    except StalledError as e:
        print(f"prfeval evaluate: stopped: {e}", file=sys.stderr)
        return EXIT_USAGE
    from pipeline import results, runs

    runs.record(args.registry, results.read_run(cfg.output), results_uri=cfg.output)
    print_summary(summary)
    return EXIT_ROW_ERRORS if summary.errors or summary.failed_groups else EXIT_OK


def print_summary(summary) -> None:
    print(
        f"run {summary.run_id}: {summary.groups_done} reference group(s) scored, {summary.groups_skipped} already "
        f"done; {summary.images} images, {summary.pairs} pairs, {summary.errors} error row(s) "
        f"in {summary.seconds:.1f} s ({summary.pairs_per_second:.1f} pairs/s)"
    )
    print(f"results: {summary.output}  (images/, pairs/, errors/, run.json)")
    if summary.errors:
        print(f"some rows failed: see {storage.join(summary.output, 'errors')}", file=sys.stderr)
