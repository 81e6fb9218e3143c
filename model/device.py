"""Device choice: a CUDA device when one is available, else the CPU; a GPU is never assumed."""

from __future__ import annotations

import warnings

import torch

__all__ = ["select_device"]


def select_device(prefer: str | None = None) -> torch.device:
    """The device to run on.

    ``None`` or ``"auto"``: ``cuda`` when available, else ``cpu``. An explicit ``"cuda"``/``"cuda:N"`` falls
    back to the CPU with a warning when no CUDA device is present; ``"cpu"`` is always honoured.
    """
    if prefer is None or prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {prefer!r}: {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            warnings.warn(
                f"device {prefer!r} requested but CUDA is not available; using the CPU", stacklevel=2
            )
            return torch.device("cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {prefer!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device
