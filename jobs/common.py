"""What every command shares: exit codes, user-facing errors, run ids, version facts."""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence

from pipeline import storage

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


def new_run_id(prefix: str = "run") -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{now}-{uuid.uuid4().hex[:6]}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Versions of prfeval and the libraries that shape its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("prfeval", "torch", "ray", "pyarrow", "timm", "pillow", "imagecodecs"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def git_commit() -> str | None:
    """The commit prfeval runs from, when it runs from a git checkout."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
