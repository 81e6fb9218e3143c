"""Checkpoints shipped inside the package, under ``model/weights/``.

Which file belongs to which variant is the variant's own metadata (``register_model(..., weights=...)``), not a
file-name convention.
"""

from __future__ import annotations

from pathlib import Path

from .registry import UnknownModelError, packaged_weights

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_checkpoint(name: str) -> str | None:
    """The packaged checkpoint of a registered model, or None when the package ships none for it."""
    try:
        weights = packaged_weights(name)
    except UnknownModelError:
        return None
    if not weights:
        return None
    path = WEIGHTS_DIR / weights
    return str(path) if path.is_file() else None
