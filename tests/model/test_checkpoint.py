"""Checkpoints: safetensors round trips (local and S3), the recorded sha256, clear refusals of bad files."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save

from model import (
    Checkpoint,
    CheckpointError,
    checkpoint_sha256,
    create_model,
    load_checkpoint,
    read_safetensors_header,
    save_checkpoint,
)

TRAINING = {"trained_on": "clic2024-perceptual-train", "val_accuracy": 0.812, "epochs": 3}


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(7)
    return create_model("prfnet-tiny").eval()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    o = torch.rand(2, 3, 64, 64, generator=g)
    return (
        o,
        (o + 0.05 * torch.randn(o.shape, generator=g)).clamp(0, 1),
        torch.rand(2, 3, 64, 64, generator=g),
    )


def _assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module, inputs) -> None:
    with torch.inference_mode():
        assert torch.equal(a(*inputs), b(*inputs))


def test_round_trip_local(tiny, inputs, tmp_path):
    path = tmp_path / "ckpt" / "prfnet-tiny.safetensors"
    sha = save_checkpoint(tiny, str(path), TRAINING)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() == checkpoint_sha256(str(path))
    ckpt = load_checkpoint(str(path), expected_model="prfnet-tiny")
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.sha256 == sha and ckpt.uri == str(path)
    assert not ckpt.model.training
    assert ckpt.metadata["model"] == "prfnet-tiny"
    assert ckpt.metadata["config"] == tiny.meta["config"]
    assert ckpt.metadata["format_version"] == 1
    assert {k: ckpt.metadata[k] for k in TRAINING} == TRAINING
    assert ckpt.model.meta == tiny.meta
    _assert_same_outputs(tiny, ckpt.model, inputs)
    assert next(ckpt.model.parameters()).device.type == "cpu"


def test_round_trip_s3(tiny, inputs, s3):
    uri = s3.uri("models/prfnet-tiny.safetensors")
    sha = save_checkpoint(tiny, uri, TRAINING)
    stored = s3.fs.cat(f"{s3.bucket}/models/prfnet-tiny.safetensors")  # read by an independent client
    assert sha == hashlib.sha256(stored).hexdigest()
    ckpt = load_checkpoint(uri)
    assert ckpt.sha256 == sha and ckpt.metadata["trained_on"] == TRAINING["trained_on"]
    _assert_same_outputs(tiny, ckpt.model, inputs)


def test_same_weights_and_metadata_give_the_same_bytes(tiny, tmp_path):
    a = save_checkpoint(tiny, str(tmp_path / "a.safetensors"), TRAINING)
    b = save_checkpoint(tiny, str(tmp_path / "b.safetensors"), dict(reversed(TRAINING.items())))
    assert a == b


def test_the_recorded_config_rebuilds_a_non_default_model(inputs, tmp_path):
    torch.manual_seed(3)
    net = create_model("prfnet-tiny", head_channels=[8, 16, 32, 32], mlp_hidden=16).eval()
    path = str(tmp_path / "narrow.safetensors")
    save_checkpoint(net, path)
    ckpt = load_checkpoint(path)
    assert ckpt.model.config["head_channels"] == [8, 16, 32, 32]
    _assert_same_outputs(net, ckpt.model, inputs)


@pytest.mark.slow
def test_round_trip_paper_model(get_model, inputs, tmp_path):
    net = get_model("prfnet")
    path = str(tmp_path / "prfnet.safetensors")
    sha = save_checkpoint(net, path, {"trained_on": "nothing yet"})
    ckpt = load_checkpoint(path, expected_model="prfnet")
    assert ckpt.sha256 == sha
    _assert_same_outputs(net, ckpt.model, inputs)


def test_file_holds_only_safetensors_and_json(tiny, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny, str(path), TRAINING)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["prfeval"])
    assert meta["model"] == "prfnet-tiny" and meta["val_accuracy"] == TRAINING["val_accuracy"]
    assert set(header) - {"__metadata__"} == set(tiny.state_dict())


def test_header_parser_reads_what_safetensors_writes():
    tensors = {
        "w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "b": torch.zeros(4, dtype=torch.int64),
    }
    data = st_save(tensors, metadata={"note": "hello"})
    header = read_safetensors_header(data)
    assert header["__metadata__"] == {"note": "hello"}
    assert header["w"]["shape"] == [2, 3] and header["w"]["dtype"] == "F32"
    assert header["b"]["shape"] == [4] and header["b"]["dtype"] == "I64"
    assert read_safetensors_header(st_save({})) == {}


@pytest.mark.parametrize(
    "blob, reason",
    [
        (b"", "truncated or not a safetensors file"),
        (b"\x05\x00\x00", "truncated or not a safetensors file"),
        ((10**9).to_bytes(8, "little") + b"{}", "truncated or not a safetensors file"),
        ((50).to_bytes(8, "little") + b'{"w": 1}', "truncated \\(header of 50 bytes"),
        ((4).to_bytes(8, "little") + b"{\xff\xfe}", "unreadable header"),
        ((2).to_bytes(8, "little") + b"[]", "truncated or not a safetensors file"),
        ((2).to_bytes(8, "little") + b"{}", None),
        (b"\x80\x04" + b"x" * 20, "pickled PyTorch checkpoint"),
        (b"PK\x03\x04" + b"x" * 20, "pickled PyTorch checkpoint"),
    ],
    ids=[
        "empty",
        "short",
        "huge-length",
        "short-header",
        "not-utf8",
        "not-json-object",
        "empty-header",
        "pickle",
        "zip",
    ],
)
def test_header_parser_refusals(blob, reason):
    if reason is None:
        assert read_safetensors_header(blob, "x.safetensors") == {}
        return
    with pytest.raises(CheckpointError, match=reason) as err:
        read_safetensors_header(blob, "x.safetensors")
    assert str(err.value).startswith("x.safetensors")


def test_header_parser_checks_the_tensor_byte_ranges():
    data = st_save({"w": torch.ones(16)})
    with pytest.raises(CheckpointError, match=r"truncated: .* bytes expected"):
        read_safetensors_header(data[:-8], "cut.safetensors")
    bad = json.dumps({"w": {"dtype": "F32", "shape": [16], "data_offsets": "nope"}}).encode()
    with pytest.raises(CheckpointError, match="malformed tensor entries"):
        read_safetensors_header(len(bad).to_bytes(8, "little") + bad, "bad.safetensors")


def test_credentials_never_appear_in_messages():
    for uri in (
        "memory://AKIDSECRET:hunter2@bucket/x.safetensors",
        "file://AKIDSECRET:hunter2@/nope.safetensors",
    ):
        with pytest.raises(CheckpointError, match="checkpoint not found") as err:
            load_checkpoint(uri)
        assert "hunter2" not in str(err.value) and "AKIDSECRET" not in str(err.value)
        assert "://***@" in str(err.value)


# --- refusals -----------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this object creates a file: proof that pickled code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_payload_is_live(tmp_path):
    """Control for the tests below: unpickling the payload really does create its marker file."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(str(marker)))).close()
    assert marker.exists()


def test_refuses_a_pickle_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}))
    with pytest.raises(
        CheckpointError, match="looks like a pickled PyTorch checkpoint; prfeval only loads safetensors"
    ):
        load_checkpoint(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_refuses_torch_save_files(tiny, tmp_path, zipfile):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save(
        {"state_dict": tiny.state_dict(), "extra": _Payload(str(marker))},
        str(path),
        _use_new_zipfile_serialization=zipfile,
    )
    with pytest.raises(CheckpointError, match="pickled PyTorch checkpoint"):
        load_checkpoint(str(path))
    assert not marker.exists()


def test_refuses_truncated_and_corrupt_files(tiny, tmp_path):
    good = tmp_path / "good.safetensors"
    save_checkpoint(tiny, str(good))
    data = good.read_bytes()
    cases = {
        "half.safetensors": data[: len(data) // 2],
        "one-byte-short.safetensors": data[:-1],
        "header-only.safetensors": data[:5],
        "empty.safetensors": b"",
        "text.safetensors": b"this is not a checkpoint at all, just some text",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(CheckpointError, match=r"truncated|corrupt|not a safetensors file") as err:
            load_checkpoint(str(tmp_path / name))
        assert name in str(err.value)


def test_refuses_another_variant(tiny, tmp_path):
    path = str(tmp_path / "tiny.safetensors")
    save_checkpoint(tiny, path)
    with pytest.raises(CheckpointError, match="checkpoint of 'prfnet-tiny', but 'prfnet' was expected"):
        load_checkpoint(path, expected_model="prfnet")


def test_refuses_weights_that_do_not_fit_the_config(tiny, tmp_path):
    narrow = create_model("prfnet-tiny", head_channels=[8, 16, 32, 32])
    tensors = {k: v.contiguous() for k, v in narrow.state_dict().items()}
    header = {"model": "prfnet-tiny", "config": tiny.meta["config"], "format_version": 1}
    path = tmp_path / "mismatch.safetensors"
    path.write_bytes(st_save(tensors, metadata={"prfeval": json.dumps(header)}))
    with pytest.raises(CheckpointError, match=r"tensor 'cross\.0\.proj\.weight' has shape \(8, 64, 1, 1\)"):
        load_checkpoint(str(path))

    tensors.pop("mlp.3.bias")
    path.write_bytes(
        st_save({k: tiny.state_dict()[k] for k in tensors}, metadata={"prfeval": json.dumps(header)})
    )
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\), e\.g\. \['mlp\.3\.bias'\]"):
        load_checkpoint(str(path))


def test_refuses_safetensors_without_prfeval_metadata(tiny, tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(st_save({k: v.contiguous() for k, v in tiny.state_dict().items()}))
    with pytest.raises(CheckpointError, match="without prfeval metadata"):
        load_checkpoint(str(path))


def test_refuses_unknown_model_and_newer_format(tiny, tmp_path):
    tensors = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    path = tmp_path / "x.safetensors"
    header = {"model": "prfnet-huge", "config": {}, "format_version": 1}
    path.write_bytes(st_save(tensors, metadata={"prfeval": json.dumps(header)}))
    with pytest.raises(CheckpointError, match="unknown model 'prfnet-huge'"):
        load_checkpoint(str(path))
    header = {"model": "prfnet-tiny", "config": tiny.meta["config"], "format_version": 99}
    path.write_bytes(st_save(tensors, metadata={"prfeval": json.dumps(header)}))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(str(path))


def test_missing_file_local_and_s3(tmp_path, s3):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "nope.safetensors"))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(s3.uri("nope.safetensors"))


def test_save_rejects_bad_metadata(tiny, tmp_path):
    path = str(tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(tiny, path, {"model": "something-else"})
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_checkpoint(tiny, path, {"when": object()})
    with pytest.raises(CheckpointError, match="registered prfeval model"):
        save_checkpoint(torch.nn.Linear(2, 2), path)
    assert not (tmp_path / "m.safetensors").exists()
