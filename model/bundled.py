"""Checkpoints shipped inside the package (``model/weights/<name>.safetensors``)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_checkpoint(name: str) -> str | None:
    """The packaged checkpoint of a registered model, or None when the package ships none for it."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return str(path) if path.is_file() else None
