"""What a training run leaves under ``--output`` (local or any fsspec URI), and how ``--resume`` reads it back.

::

    train.json                              the run: config, data, split, per-epoch history, the latest checkpoint
    triplets.parquet                        the normalised triplets with their split (what was trained on)
    checkpoints/epoch-0003.safetensors      the model after epoch 3 (model.save_checkpoint: weights + metadata)
    checkpoints/epoch-0003.optim.safetensors  the optimizer's state after epoch 3 (tensors + JSON, no pickle)
    <model>.safetensors                     the model after the last epoch run so far

``train.json`` is rewritten after each epoch, last, so it always names a complete checkpoint: a run stopped at any
moment resumes from the last epoch it finished.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from model.checkpoint import read_safetensors_header
from pipeline.io import storage

STATE_FILE = "train.json"
TRIPLETS_FILE = "triplets.parquet"


def epoch_checkpoint(output: str, epoch: int) -> str:
    return storage.join(output, "checkpoints", f"epoch-{epoch:04d}.safetensors")


def optimizer_file(output: str, epoch: int) -> str:
    return storage.join(output, "checkpoints", f"epoch-{epoch:04d}.optim.safetensors")


def validation_file(output: str, epoch: int) -> str:
    return storage.join(output, f"validation/epoch-{epoch:04d}.parquet")


def final_checkpoint(output: str, model: str) -> str:
    return storage.join(output, f"{model}.safetensors")


def read_state(output: str) -> dict | None:
    try:
        return json.loads(storage.read_text(storage.join(output, STATE_FILE)))
    except FileNotFoundError:
        return None


def write_state(output: str, state: dict) -> None:
    storage.write_text(storage.join(output, STATE_FILE), json.dumps(state, indent=2, sort_keys=True))


def save_optimizer(optimizer: torch.optim.Optimizer, uri: str) -> None:
    """The optimizer's tensors as safetensors, its scalars and param groups as JSON metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            key = f"state.{idx}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().to("cpu").contiguous()
            else:
                scalars[key] = value
    meta = {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    storage.write_bytes(uri, st_save(tensors, metadata=meta))


def load_optimizer(optimizer: torch.optim.Optimizer, uri: str, device: torch.device | str = "cpu") -> None:
    """Restore what :func:`save_optimizer` wrote into an optimizer built over the same parameters."""
    data = storage.read_bytes(uri)
    tensors = st_load(data)
    meta = read_safetensors_header(data, storage.display(uri)).get("__metadata__") or {}
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value.to(device) if name != "step" else value
    for key, value in json.loads(meta.get("scalars", "{}")).items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    groups = json.loads(meta["param_groups"])
    for group, current in zip(groups, optimizer.param_groups, strict=True):  # JSON turned tuples into lists
        for key, value in current.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
