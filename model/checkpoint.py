"""Checkpoints: one safetensors file holding the weights and, in its header, JSON metadata.

The header's ``__metadata__["prfeval"]`` is a JSON object: the registered model name, the config that rebuilds
the model, the format version, and whatever the writer adds (what it was trained on, measured accuracy, ...).
Files are read and written with fsspec, so local paths, ``file://`` and ``s3://`` (any fsspec URI) all work; S3
endpoints and credentials come from the standard AWS environment, and messages never show credentials.

Nothing here ever unpickles: a pickled PyTorch checkpoint is recognised by its first bytes and refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .registry import UnknownModelError, create_model

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "checkpoint_metadata",
    "checkpoint_sha256",
    "load_checkpoint",
    "read_safetensors_header",
    "save_checkpoint",
]

FORMAT_VERSION = 1
METADATA_KEY = "prfeval"
RESERVED_KEYS = ("model", "config", "format_version")
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class CheckpointError(Exception):
    """A checkpoint that cannot be written or loaded; the message says why."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its metadata, and the sha256 of the file's bytes."""

    model: nn.Module
    metadata: dict[str, Any]
    sha256: str
    uri: str


def save_checkpoint(model: nn.Module, uri: str, metadata: Mapping[str, Any] | None = None) -> str:
    """Write ``model``'s weights and metadata to ``uri`` as one safetensors file; return its sha256 (hex).

    ``metadata`` is any JSON-serialisable mapping (training data, measured accuracy, ...); the keys ``model``,
    ``config`` and ``format_version`` are filled in from the model and may not be given.
    """
    meta = getattr(model, "meta", None)
    if not isinstance(meta, Mapping) or "name" not in meta or "config" not in meta:
        raise CheckpointError(
            "save_checkpoint needs a registered prfeval model (one with .meta name and config)"
        )
    user = dict(metadata or {})
    clash = sorted(set(user) & set(RESERVED_KEYS))
    if clash:
        raise CheckpointError(f"metadata keys {clash} are reserved (filled in from the model)")
    header = {**user, "model": meta["name"], "config": meta["config"], "format_version": FORMAT_VERSION}
    try:
        header_json = json.dumps(header, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    data = st_save(tensors, metadata={METADATA_KEY: header_json})
    _write(uri, data)
    return hashlib.sha256(data).hexdigest()


def checkpoint_sha256(uri: str) -> str:
    """The sha256 (hex) of the checkpoint file's bytes, as recorded in output rows."""
    return hashlib.sha256(_read(uri)).hexdigest()


def load_checkpoint(
    uri: str, *, expected_model: str | None = None, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a checkpoint of :func:`save_checkpoint`: rebuild the model from its metadata, load the weights.

    Raises :class:`CheckpointError` for a missing, truncated or corrupt file, a pickled PyTorch checkpoint, a
    checkpoint of another model than ``expected_model``, or weights that do not fit the recorded config.
    """
    data = _read(uri)
    where = _display(uri)
    sha = hashlib.sha256(data).hexdigest()
    meta = checkpoint_metadata(data, where)

    name = meta.get("model")
    if not isinstance(name, str):
        raise CheckpointError(f"{where}: prfeval metadata names no model")
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"{where} is a checkpoint of {name!r}, but {expected_model!r} was expected")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: prfeval metadata holds no model config")

    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error type for every kind of damage
        raise CheckpointError(f"{where} is corrupt or truncated: {e}") from None

    try:
        model = create_model(name, **config)
    except UnknownModelError as e:
        raise CheckpointError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: the recorded config does not build {name!r}: {e}") from None
    _check_state(model, tensors, name, where)
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    return Checkpoint(model=model, metadata=meta, sha256=sha, uri=uri)


# --- helpers ------------------------------------------------------------------------------------------------


_LOCAL = re.compile(r"^(file|local)://")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s:]+(:[^/@\s]*)?@")


def _display(text: str) -> str:
    """``text`` (a URI or a message naming one) without the ``user:secret@`` part of any URI in it."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def _local_path(uri: str) -> str | None:
    """The file-system path of a local path or ``file://`` URI; None for any other scheme."""
    if _LOCAL.match(uri):
        return _LOCAL.sub("", uri)
    return None if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", uri) else uri


def _remote(uri: str):
    """The fsspec filesystem and path of a remote URI; S3 honours ``AWS_ENDPOINT_URL(_S3)`` when set."""
    import fsspec

    options: dict[str, Any] = {}
    if uri.lower().startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    return fsspec.core.url_to_fs(uri, **options)


def _read(uri: str) -> bytes:
    try:
        path = _local_path(uri)
        if path is not None:
            with open(path, "rb") as f:
                return f.read()
        fs, remote = _remote(uri)
        with fs.open(remote, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {_display(uri)}") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise CheckpointError(f"cannot read checkpoint {_display(uri)}: {_display(str(e))}") from None


def _write(uri: str, data: bytes) -> None:
    """Write the file whole: a local file appears at once (temp file + rename); an object store PUT is atomic."""
    path = _local_path(uri)
    if path is None:
        fs, remote = _remote(uri)
        with fs.open(remote, "wb") as f:
            f.write(data)
        return
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _looks_pickled(data: bytes) -> bool:
    """A pickle (protocol 2-5 opcode PROTO) or a zip archive, which is what ``torch.save`` writes."""
    return (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or data[
        :4
    ] == b"PK\x03\x04"


def read_safetensors_header(data: bytes, where: str = "safetensors file") -> dict[str, Any]:
    """The JSON header of the safetensors file ``data``: an 8-byte little-endian length, then that much JSON.

    The header maps tensor names to their dtype, shape and byte range, and ``__metadata__`` to a string->string
    mapping. Raises :class:`CheckpointError` (naming ``where``) for a pickle, a truncated or corrupt file.
    """
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else None
    plausible = n is not None and n <= _MAX_HEADER and data[8:9] == b"{"
    if not plausible and _looks_pickled(data):
        raise CheckpointError(
            f"{where}: this looks like a pickled PyTorch checkpoint; prfeval only loads safetensors files "
            "(unpickling can run arbitrary code). Convert it where you trust it: "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"
        )
    if n is None or not plausible:
        raise CheckpointError(f"{where} is truncated or not a safetensors file ({len(data)} bytes)")
    if 8 + n > len(data):
        raise CheckpointError(f"{where} is truncated (header of {n} bytes, file of {len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{where} is corrupt or not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where} is corrupt or not a safetensors file (header is not a JSON object)")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointError(f"{where} is corrupt (malformed tensor entries in the header)") from None
    if 8 + n + end > len(data):
        raise CheckpointError(f"{where} is truncated: {8 + n + end} bytes expected, {len(data)} present")
    return header


def checkpoint_metadata(data: bytes, where: str) -> dict[str, Any]:
    """The prfeval metadata of a checkpoint's bytes, read from the safetensors header alone (no weights decoded,
    nothing unpickled): what a driver checks before any work starts. Raises :class:`CheckpointError`."""
    return _prfeval_metadata(read_safetensors_header(data, where), where)


def _prfeval_metadata(header: Mapping[str, Any], where: str) -> dict[str, Any]:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(
            f"{where} is a safetensors file without prfeval metadata: not a prfeval checkpoint"
        )
    try:
        meta = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{where}: prfeval metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: prfeval metadata is not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: checkpoint format version {version!r} is not supported (this prfeval reads up to "
            f"{FORMAT_VERSION}); upgrade prfeval"
        )
    return meta


def _check_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], name: str, where: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}")
        raise CheckpointError(
            f"{where}: weights do not match {name!r} with the recorded config: {'; '.join(parts)}"
        )
    for key, ref in expected.items():
        got = tensors[key]
        if got.shape != ref.shape:
            raise CheckpointError(
                f"{where}: tensor {key!r} has shape {tuple(got.shape)} in the checkpoint but {name!r} "
                f"with the recorded config expects {tuple(ref.shape)}"
            )
        if got.dtype != ref.dtype and not (got.is_floating_point() and ref.is_floating_point()):
            raise CheckpointError(f"{where}: tensor {key!r} has dtype {got.dtype}, expected {ref.dtype}")
