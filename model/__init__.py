"""PRFNet and its parts: the model, a registry of named variants, safetensors checkpoints, device choice.

Knows nothing of Ray, manifests or the pipeline::

    from model import create_model
    net = create_model("prfnet-tiny").eval()
    p_a = net(o, a, b)  # P(A closer to O than B) for images in [0, 1], shape (N, 3, H, W)
"""

from __future__ import annotations

from . import prfnet as _prfnet  # noqa: F401  (registers the variants)
from .checkpoint import Checkpoint, CheckpointError, checkpoint_sha256, load_checkpoint, save_checkpoint
from .device import select_device
from .prfnet import PRFNet
from .registry import UnknownModelError, create_model, list_models, model_info, register_model

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "PRFNet",
    "UnknownModelError",
    "checkpoint_sha256",
    "create_model",
    "list_models",
    "load_checkpoint",
    "model_info",
    "register_model",
    "save_checkpoint",
    "select_device",
]
