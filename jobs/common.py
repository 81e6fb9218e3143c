"""What every command shares: exit codes, user-facing errors, version facts."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

from pipeline.io import storage
from pipeline.runs.provenance import versions

__all__ = [
    "EXIT_OK",
    "EXIT_ROW_ERRORS",
    "EXIT_USAGE",
    "ArgumentParser",
    "UsageError",
    "command",
    "versions",
]

EXIT_OK = 0
EXIT_ROW_ERRORS = 1  # some rows failed (see errors); for `regress`: a regression
EXIT_USAGE = 2  # unusable input, bad arguments, or an error


class UsageError(Exception):
    """Input or arguments the command cannot use: printed as one clear message, exit code 2."""


def command(fn: Callable[[list[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's ``main``: a :class:`UsageError` prints ``prfeval: error: ...`` and returns 2."""

    @functools.wraps(fn)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return fn(None if argv is None else list(argv))
        except UsageError as e:
            print(f"prfeval: error: {storage.redact(str(e))}", file=sys.stderr)
            return EXIT_USAGE

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting, so ``main(argv)`` is testable in-process."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")
