"""PRFNet and its parts: the model, a registry of named variants, safetensors checkpoints, device choice.

A leaf: it imports nothing of the pipeline or the commands, and knows nothing of Ray or manifests::

    from model import create_model
    net = create_model("prfnet-tiny").eval()
    p_a = net(o, a, b)  # P(A closer to O than B) for images in [0, 1], shape (N, 3, H, W)

Names are imported on first use, so ``import model.registry`` (the generic :class:`~model.registry.Registry`
every lookup of prfeval uses) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "checkpoint_sha256": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "read_safetensors_header": "checkpoint",
    "default_checkpoint": "bundled",
    "select_device": "device",
    "PRFNet": "prfnet",
    "Registry": "registry",
    "UnknownModelError": "registry",
    "create_model": "registry",
    "did_you_mean": "registry",
    "list_models": "registry",
    "model_info": "registry",
    "register_model": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
