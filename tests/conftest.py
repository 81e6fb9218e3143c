"""Shared fixtures: a real S3 server on 127.0.0.1 (moto) and a real local Ray.

The S3 server is started once per session and its endpoint exported through the standard AWS environment
(``AWS_ENDPOINT_URL`` and test credentials) before any Ray worker starts, so drivers, tasks and actors all talk to it
exactly as they would to S3. Each test gets a bucket of its own.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("TQDM_DISABLE", "1")

S3_TEST_KEY_ID = "testing-key-id"
S3_TEST_SECRET = "testing-secret-key"


@dataclass
class S3Env:
    """A bucket on the session's S3 server, with clients configured for it."""

    endpoint: str
    bucket: str
    fs: object  # s3fs.S3FileSystem
    arrow_fs: object  # pyarrow.fs.S3FileSystem

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"


class S3Control:
    """The session's S3 server, which a fault test may take down and bring back on the same port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self._cls = ThreadedMotoServer
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        _host, self.port = self.server.get_host_and_port()

    def restart(self, downtime: float) -> None:
        """Stop the server, stay down ``downtime`` seconds, start again (buckets and objects are kept)."""
        import time

        self.server.stop()
        time.sleep(downtime)
        self.server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


_S3: list[S3Control] = []


@pytest.fixture(scope="session")
def s3_server():
    """Start moto's S3 server on 127.0.0.1 (a free port) and point the AWS environment at it."""
    control = S3Control()
    _S3.append(control)
    port = control.port
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": S3_TEST_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_TEST_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield endpoint
    control.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3(s3_server) -> S3Env:
    """A fresh bucket on the session's S3 server, with s3fs and pyarrow filesystems for it."""
    import pyarrow.fs as pafs
    import s3fs

    bucket = f"prfeval-test-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.mkdir(bucket)
    arrow_fs = pafs.S3FileSystem(
        endpoint_override=s3_server.replace("http://", ""),
        scheme="http",
        access_key=S3_TEST_KEY_ID,
        secret_key=S3_TEST_SECRET,
        region="us-east-1",
    )
    return S3Env(endpoint=s3_server, bucket=bucket, fs=fs, arrow_fs=arrow_fs)


@pytest.fixture
def s3_control(s3_server) -> S3Control:
    """Control over the session's S3 server (restart it to simulate an object-store outage)."""
    return _S3[0]


@pytest.fixture
def ray_local(s3_server):
    """A real local Ray (2 CPUs), started once and shared; started after the S3 environment so workers see it."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device; the CPU path is tested separately")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
