"""`prfeval study import`: a human 2AFC study as prfeval inputs — regenerated images, a manifest and triplets.

``prfeval study import --answers URI --methods URI --refs URI --output URI [--format mucped23]
[--reference-files URI] [--originals NAMES] [--methods-only NAMES]`` reads the study's answers and methods,
regenerates the images the raters saw with prfeval's sweep, checks each method against the study (each file's
sha256 where ``--reference-files`` gives them, else the mean bpp within ``--tolerance`` of the subset-corrected
study mean), leaves out the answers about methods that do not reproduce (with a count and the reason), and writes
``manifest.parquet`` (for ``prfeval evaluate``), ``triplets.parquet`` (``ref_uri, a_uri, b_uri, n_a, n_b, label``
per original and unordered pair, for ``prfeval train`` and ``prfeval agreement``), ``methods.parquet`` (the
verdicts) and ``study.json``. See :mod:`pipeline.human.importer`.

Exit codes: 0, 1 when no pair of methods is left, 2 for unusable input.
"""

from __future__ import annotations

import shlex

from jobs.common import EXIT_USAGE, ArgumentParser, UsageError, command
from pipeline.codecs import SpecError
from pipeline.human import importer
from pipeline.human.study import StudyError
from pipeline.io import storage
from pipeline.sweep import EXECUTORS, SweepInputError

SUBCOMMANDS = ("import",)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="prfeval study import", description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", required=True, help="the study's answers table (CSV/TSV/Parquet)")
    p.add_argument(
        "--methods", required=True, help="the study's methods table (method, family, quality, ...)"
    )
    p.add_argument("--refs", required=True, help="folder of the originals, <original name>.<ext>")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--format", default="mucped23", choices=sorted(importer.FORMATS), help="the answers' layout"
    )
    p.add_argument(
        "--reference-files", help="per-file sizes and sha256s to match exactly (method, original, ...)"
    )
    p.add_argument(
        "--originals", action="append", help="import only these originals (comma-separated; repeat)"
    )
    p.add_argument(
        "--methods-only",
        "--only-methods",
        dest="only_methods",
        action="append",
        help="import only the answers between these methods (comma-separated; repeat)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.005,
        help="largest relative mean-bpp difference kept (default 0.005)",
    )
    p.add_argument("--executor", choices=sorted(EXECUTORS), default="ray", help="where the sweep runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def summary_lines(doc: dict) -> list[str]:
    """What the import did, in a few lines (printed and kept in study.json's terms)."""
    c = doc["counts"]
    by = doc["checked_by"]
    lines = [
        f"imported {c['answers_imported']} of {c['answers_read']} answers: {c['triplets']} triplets over "
        f"{c['originals']} original(s), {c['methods_kept']} of {c['methods_checked']} method(s) kept",
        f"checked by sha256: {', '.join(by['sha256']) or 'none'}",
        f"checked by mean bpp only (subset-corrected, within ±{100 * doc['tolerance']:g}%): "
        f"{', '.join(by['mean bpp only']) or 'none'}",
    ]
    if by["bytes"]:
        lines.append(f"checked by file size: {', '.join(by['bytes'])}")
    for method, reason in doc["refused"].items():
        lines.append(f"refused {method}: {reason}")
    for why, what in doc["left_out"].items():
        lines.append(f"left out ({why}): {what['answers']} answer(s)")
    return lines


@command
def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: prfeval study {{{','.join(SUBCOMMANDS)}}} [options]\n\n{__doc__.split(chr(10) * 2)[0]}"
        )
        return 0 if argv else EXIT_USAGE
    if argv[0] not in SUBCOMMANDS:
        raise UsageError(f"prfeval study: unknown subcommand {argv[0]!r} (known: {', '.join(SUBCOMMANDS)})")
    args = build_parser().parse_args(argv[1:])
    if not args.tolerance >= 0:
        raise UsageError("--tolerance must be >= 0")
    try:
        result = importer.import_study(
            args.answers,
            args.methods,
            args.refs,
            args.output,
            study=importer.FORMATS[args.format],
            reference_files=args.reference_files,
            originals=args.originals,
            only_methods=args.only_methods,
            tolerance=args.tolerance,
            executor=args.executor,
            progress=not args.no_progress,
            command=shlex.join(["prfeval", "study", *argv]),
            log=print,
        )
    except (StudyError, SweepInputError, SpecError) as e:
        raise UsageError(str(e)) from None
    for line in summary_lines(result.document):
        print(line)
    print(
        f"outputs in {storage.display(args.output)}: manifest.parquet, triplets.parquet, methods.parquet, study.json"
    )
    return result.exit_code
