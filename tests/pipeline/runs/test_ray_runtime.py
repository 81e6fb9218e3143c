"""One line for a failed Ray task or actor: the user's exception found behind Ray's wrappers."""

from __future__ import annotations

from pipeline.runs.ray_runtime import describe_failure, root_cause


class FakeRayError(Exception):
    """Stands for Ray's own wrappers, which carry the remote traceback in their message."""


FakeRayError.__module__ = "ray.exceptions"


class CheckpointError(Exception):
    pass


def test_the_cause_inside_a_remote_traceback_is_named():
    remote = (
        "The actor died because of an error raised in its creation task, ray::MapWorker.__init__()\n"
        "Traceback (most recent call last):\n"
        '  File "scorer.py", line 3, in load\n'
        "model.checkpoint.CheckpointError: /ckpt/x.safetensors: weights do not match 'prfnet-tiny'\n"
    )
    try:
        try:
            raise FakeRayError(remote)
        except FakeRayError as e:
            raise FakeRayError("") from e  # an empty wrapper on top, like Ray Data's SystemException
    except FakeRayError as outer:
        line = describe_failure(outer)
    assert line == "CheckpointError: /ckpt/x.safetensors: weights do not match 'prfnet-tiny'"


def test_a_wrapped_user_exception_is_found_and_credentials_are_hidden():
    inner = CheckpointError("cannot read s3://key:secret@bucket/x.safetensors\nmore detail")
    wrapper = FakeRayError("task failed")
    wrapper.cause = inner
    assert root_cause(wrapper) is inner
    assert describe_failure(wrapper) == "CheckpointError: cannot read s3://***@bucket/x.safetensors"
    assert describe_failure(ValueError()) == "ValueError"
