"""`prfeval sweep`: encode references with real codecs at each setting; write images, manifest and codec table.

    prfeval sweep --refs URI --codecs SPEC --output URI [--keep-bitstreams] [--max-pixels N] [--limit N]

Exit codes: 0 everything succeeded; 1 some references or settings failed (listed in ``errors/sweep.parquet``,
the rest completed); 2 unusable input (bad spec, no references, output not writable).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from jobs.common import ArgumentParser, UsageError, command
from pipeline.codecs import DEFAULT_SPEC, SpecError, describe_codecs
from pipeline.image import decoding
from pipeline.io import storage
from pipeline.sweep import EXECUTORS, SweepInputError, SweepSummary, run_sweep

EPILOG = """\
references (--refs):
  a folder or bucket prefix of images (any Pillow-readable file; not recursive), one image, a table
  (CSV/TSV/Parquet with ref_id, ref_uri; relative URIs resolve against its folder), or the bundled photos:
  samples:  samples:astronaut,coffee  samples:?max_side=256
  Odd references are normalised, and what is encoded is written to refs/ (what evaluate compares against):
  greyscale is replicated to RGB, alpha is composited over white, 16-bit is rounded to 8 bits, EXIF rotation is
  applied; images over --max-pixels are refused (the decompression-bomb guard stays on).

codecs (--codecs): inline "codec:knob=v1,v2 ..." or a TOML/YAML file mapping codec -> {knob: [values]};
a codec named alone runs its default settings. Available:
"""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="prfeval sweep",
        description="Encode every reference with each codec at each setting, decode, and write the decoded\n"
        "images, manifest.parquet and codecs.parquet for `prfeval evaluate`.",
        epilog=EPILOG + describe_codecs() + f'\n\nexample:\n  --codecs "{DEFAULT_SPEC}"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--refs", required=True, help="reference images: folder/prefix URI, table, or samples:"
    )
    parser.add_argument("--codecs", required=True, metavar="SPEC", help='e.g. "jpeg:q=20,40,60 jxl:d=1,3"')
    parser.add_argument(
        "--output",
        required=True,
        help="output folder URI (local path or s3://...); tasks write to it directly, so on a cluster use "
        "an object store or a shared file system",
    )
    parser.add_argument("--keep-bitstreams", action="store_true", help="also write the encoded bitstreams")
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=decoding.DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse references larger than N pixels (default {decoding.DEFAULT_MAX_PIXELS:,})",
    )
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N references")
    parser.add_argument(
        "--executor",
        choices=sorted(EXECUTORS),
        default="ray",
        help="ray: a Ray Data job (RAY_ADDRESS joins a cluster); local: a plain loop in this process",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS
    )  # old spelling
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def report(summary: SweepSummary) -> str:
    """The end-of-run summary: counts, throughput, where the outputs are."""
    out = storage.display(summary.output)
    lines = [
        f"sweep {summary.run_id}: {summary.n_refs} reference(s), {summary.n_rows} decoded image(s) in the manifest "
        f"({summary.n_encoded} encoded now, {summary.n_reused} reused from an earlier run) in {summary.seconds:.1f} s",
    ]
    if summary.n_encoded and summary.seconds > 0:
        lines.append(
            f"  throughput: {summary.n_encoded / summary.seconds:.1f} encodes/s overall (wall clock)"
        )
    for codec, rate in summary.encodes_per_s.items():
        lines.append(f"  {codec:<5} {rate:8.1f} encodes/s per core (encode time only)")
    lines.append(f"  manifest: {storage.display(summary.manifest_uri)}")
    lines.append(f"  codecs:   {storage.display(summary.codecs_uri)}")
    folders = "refs/, images/, bitstreams/" if summary.keep_bitstreams else "refs/, images/"
    lines.append(f"  images:   {out} ({folders})")
    if summary.ignored_files:
        shown = ", ".join(summary.ignored_files[:5]) + (" …" if len(summary.ignored_files) > 5 else "")
        lines.append(f"  ignored {len(summary.ignored_files)} non-image file(s): {shown}")
    if summary.n_errors:
        lines.append(
            f"  {summary.n_errors} failure(s) ({summary.n_refs_failed} reference(s) unreadable): "
            f"see {storage.display(summary.errors_uri)}"
        )
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run_sweep(
            args.refs,
            args.codecs,
            args.output,
            keep_bitstreams=args.keep_bitstreams,
            max_pixels=args.max_pixels,
            limit=args.limit,
            executor=args.executor,
            progress=not args.no_progress,
            command=shlex.join(["prfeval", "sweep", *(argv if argv is not None else sys.argv[2:])]),
            log=lambda line: print(line, file=sys.stderr),
        )
    except (SpecError, SweepInputError) as e:
        raise UsageError(str(e)) from None
    print(report(summary))
    if summary.n_errors:
        print(
            f"prfeval sweep: {summary.n_errors} failure(s); the other references completed "
            f"(errors: {storage.display(summary.errors_uri)})",
            file=sys.stderr,
        )
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
