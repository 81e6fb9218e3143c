"""One JSON sanitiser for every document prfeval writes (run.json, regress.json, leaderboard.json, ...)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """JSON-able, recursively: numpy scalars to Python, NaN, infinities, ``pd.NA`` and ``NaT`` to ``None``, mapping
    keys to strings, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is not None and type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def plain(value: Any) -> Any:
    """One cell as a plain Python value: numpy scalars unwrapped, missing values (NaN, NA, NaT) as ``None``."""
    return jsonable(value) if not isinstance(value, dict | list | tuple) else value


def dumps(value: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` of :func:`jsonable` ``value`` (strict JSON: no NaN)."""
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)


def fingerprint(key: Any, length: int = 16) -> str:
    """A short stable hash of a JSON-able key (sorted keys; values that are not JSON are taken by ``str``)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:length]
