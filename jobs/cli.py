"""`prfeval`: one entry point, one module per command (each has an importable ``main(argv)``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line summary). Order is the order of `prfeval --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jobs.demo", "the embedded default: sweep bundled photos, evaluate on a local Ray, report"),
    "sweep": ("jobs.sweep", "encode references with real codecs at each setting; write images + manifest"),
    "evaluate": ("jobs.evaluate", "score a manifest with PRFNet on a Ray actor pool; write Parquet results"),
    "report": ("jobs.report", "leaderboards with confidence intervals, BD-rate and plots from results"),
    "regress": ("jobs.regress", "nightly gate: is the candidate run worse than the baseline?"),
    "query": ("jobs.query", "read-only DuckDB SQL over results tables"),
    "metrics": ("jobs.metrics", "list the full-reference metrics --metrics can select, with their metadata"),
    "train": ("jobs.train", "train PRFNet on 2AFC triplets (Ray Train)"),
    "clic": ("jobs.clic", "CLIC perceptual-track mode: triplet CSV in, 0/1 CSV out, accuracy vs an oracle"),
    "agreement": (
        "jobs.agreement",
        "how often each judge (PRFNet, metrics, file size) agrees with people's answers",
    ),
    "study": ("jobs.study", "import a human 2AFC study: regenerate its images, check them, write triplets"),
}

USAGE = "usage: prfeval COMMAND [options]   (prfeval COMMAND --help for a command's options)"


def _help() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [USAGE, "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help())
        return 0 if args else 2
    if args[0] == "--version":
        from jobs.common import versions

        print(f"prfeval {versions()['prfeval']}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        from model.registry import did_you_mean

        hint = did_you_mean(name, COMMANDS)
        print(f"prfeval: unknown command '{name}'{f' ({hint})' if hint else ''}\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
