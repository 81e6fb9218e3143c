"""`prfeval evaluate`: score a manifest with PRFNet on a Ray actor pool and write the results tables."""

from __future__ import annotations

import sys

from jobs.common import EXIT_OK, EXIT_ROW_ERRORS, ArgumentParser, command
from jobs.scoring_options import add_scoring_options, scoring_config, scoring_errors
from pipeline.io import storage
from pipeline.scoring import pairing


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="prfeval evaluate",
        description="Score every reference group of a manifest with PRFNet; write images/, pairs/, errors/ and "
        "run.json under --output. Rerunning the same command resumes: finished groups are skipped.",
    )
    p.add_argument("--manifest", required=True, help="manifest URI (CSV with a header, or Parquet)")
    p.add_argument("--output", required=True, help="results folder URI (local path or s3://...)")
    p.add_argument("--codecs", help="codec metadata table (CSV/Parquet) keyed by codec, codec_version")
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
        "--allow-root",
        action="append",
        dest="allow_roots",
        metavar="PREFIX",
        help="a location images may be read from (repeatable; default: the manifest's folder and the output)",
    )
    p.add_argument(
        "--registry",
        help="runs registry root URI to append this run to (default: $PRFEVAL_REGISTRY; none: not kept)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="read, validate and group the manifest and check the model, metrics and checkpoint, print what "
        "would run (groups, images, pairs by strategy, estimated patches) and exit: no image is opened, Ray is "
        "not started, nothing is written (exit 1 when some manifest rows would be error rows)",
    )
    add_scoring_options(p)
    return p


@command
def main(argv: list[str] | None = None) -> int:
    from pipeline.scoring.driver import EvaluateConfig, run_evaluate

    args = build_parser().parse_args(argv)
    roots = args.allow_roots or [storage.parent(args.manifest), args.output]
    scoring = scoring_config(args, "evaluate", argv, output=args.output, pairs=args.pairs,
                             match_tolerance=args.match_tolerance, allow_roots=roots)  # fmt: skip
    cfg = EvaluateConfig(manifest=args.manifest, codecs=args.codecs, scoring=scoring)
    if args.dry_run:
        with scoring_errors():
            plan = dry_run(cfg)
        print_plan(plan, cfg)
        return EXIT_ROW_ERRORS if plan.errors else EXIT_OK
    with scoring_errors():
        summary = run_evaluate(cfg, registry=args.registry)
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


def dry_run(cfg):
    """What `evaluate` would do with ``cfg``, from the manifest's columns alone: a
    :class:`pipeline.scoring.grouping.Plan`. Checks what the real run checks before Ray starts (the manifest, the
    codec table, the model, metrics and checkpoint); opens no image, starts no Ray, writes nothing."""
    from model import model_info
    from pipeline.scoring import grouping, manifest
    from pipeline.scoring.driver import preflight

    scoring = cfg.scoring
    mf = manifest.read_manifest(cfg.manifest)
    if cfg.codecs:
        manifest.read_codec_table(cfg.codecs)
    preflight(scoring)
    patch = int(scoring.patch or model_info(scoring.model)["patch_size"])
    return grouping.plan(mf, patch=patch, tolerance=scoring.match_tolerance)


def print_plan(plan, cfg) -> None:
    def count(n):
        return f"{n:,}" if n is not None else "cannot be estimated"

    chosen = cfg.scoring.pairs
    print(f"dry run of {storage.display(cfg.manifest)}: nothing scored, nothing written")
    print(f"groups: {plan.groups:,}")
    print(f"images: {plan.images:,}")
    print(f"manifest error rows: {plan.errors:,}")
    for strategy, n in plan.pairs.items():
        mark = "  (--pairs)" if strategy == chosen else ""
        print(f"pairs {strategy}: {count(n)}{mark}")
    if plan.pairs_note:
        print(f"  ({plan.pairs_note})")
    if plan.patches is None:
        print(f"estimated patches: {plan.patches_note or 'unknown'}")
    else:
        note = f" ({plan.patches_note})" if plan.patches_note else ""
        print(f"estimated patches: {plan.patches:,} at {plan.patch} px{note}")
