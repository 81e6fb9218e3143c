"""What every command shares: exit codes, user-facing errors, version facts."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from pipeline.io import storage
from pipeline.runs.provenance import versions
from pipeline.runs.ray_runtime import VERBOSE_ENV, describe_failure, verbose

__all__ = [
    "EXIT_OK",
    "EXIT_ROW_ERRORS",
    "EXIT_USAGE",
    "ArgumentParser",
    "UsageError",
    "add_verbose_option",
    "command",
    "versions",
]

EXIT_OK = 0
EXIT_ROW_ERRORS = 1  # some rows failed (see errors); for `regress`: a regression
EXIT_USAGE = 2  # unusable input, bad arguments, or an error


class UsageError(Exception):
    """Input or arguments the command cannot use: printed as one clear message, exit code 2."""


log = logging.getLogger("prfeval")


def command(fn: Callable[[list[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's ``main``: a :class:`UsageError` prints ``prfeval: error: ...`` and returns 2; any other
    error (a failed Ray task or actor included) prints one line naming its cause and returns 2, with the full
    trace under ``--verbose`` (or ``$PRFEVAL_VERBOSE``), which also shows Ray's own output."""

    @functools.wraps(fn)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        before = os.environ.get(VERBOSE_ENV)
        if "--verbose" in args:
            os.environ[VERBOSE_ENV] = "1"
        try:
            return _run(fn, argv)
        finally:
            if before is None:
                os.environ.pop(VERBOSE_ENV, None)
            else:
                os.environ[VERBOSE_ENV] = before

    return wrapper


def _run(fn: Callable[[list[str] | None], int], argv: Sequence[str] | None) -> int:
    """``fn(argv)``, its errors turned into one line on stderr and an exit code (see :func:`command`)."""
    try:
        return fn(None if argv is None else list(argv))
    except UsageError as e:
        print(f"prfeval: error: {storage.redact(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        log.debug("command failed", exc_info=True)
        if verbose():
            print(storage.redact(traceback.format_exc()), file=sys.stderr)
            hint = ""
        else:
            hint = " (--verbose shows the full trace)"
        text = str(e) if type(e).__module__.startswith(("pipeline.", "jobs.")) else describe_failure(e)
        line = " ".join(text.split()) or type(e).__name__
        print(f"prfeval: error: {storage.redact(line)}{hint}", file=sys.stderr)
        return EXIT_USAGE


def add_verbose_option(p: argparse.ArgumentParser) -> None:
    """``--verbose``: full traces and Ray's own output on errors (read by :func:`command`)."""
    p.add_argument("--verbose", action="store_true", help="on errors, print full traces and Ray's own output")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting, so ``main(argv)`` is testable in-process."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")
