"""Where results came from: run ids, timestamps, library versions, the code's commit."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import uuid


def new_run_id(prefix: str = "run") -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{now}-{uuid.uuid4().hex[:6]}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
