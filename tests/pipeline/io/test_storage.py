"""Storage through fsspec URIs: local paths and the real S3 server behave alike."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io import storage


def test_resolve_relative_against_local_and_s3(tmp_path):
    assert storage.resolve("img/a.png", str(tmp_path)) == os.path.join(str(tmp_path), "img", "a.png")
    assert storage.resolve("img/a.png", "s3://b/runs/x") == "s3://b/runs/x/img/a.png"
    assert storage.resolve("../a.png", "s3://b/runs/x") == "s3://b/runs/a.png"
    assert storage.resolve("s3://c/k.png", "s3://b/x") == "s3://c/k.png"
    assert storage.resolve("file:///tmp/a.png", "s3://b") == "/tmp/a.png"


def test_round_trip_local_and_s3(tmp_path, s3):
    for base in (str(tmp_path), s3.uri("data")):
        uri = storage.join(base, "sub", "x.bin")
        storage.write_bytes(uri, b"hello")
        assert storage.exists(uri)
        assert storage.read_bytes(uri) == b"hello"
        assert storage.listdir(storage.join(base, "sub"), ".bin") == [uri]
    # the object is really in the bucket, as seen by an independent client
    assert s3.fs.cat(f"{s3.bucket}/data/sub/x.bin") == b"hello"


def test_pyarrow_reads_parquet_written_through_storage(s3):
    table = pa.table({"a": [1, 2, 3]})
    uri = s3.uri("t/x.parquet")
    fs, path = storage.arrow_filesystem(uri)
    pq.write_table(table, path, filesystem=fs)
    back = pq.read_table(f"{s3.bucket}/t/x.parquet", filesystem=s3.arrow_fs)
    assert back.equals(table)


def test_redact_hides_url_credentials_and_env_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SUPERSECRETVALUE")
    text = "failed s3://AKIA:pw@host/x and https://user:pass@example.com/y key=SUPERSECRETVALUE"
    out = storage.redact(text)
    assert "pw@" not in out and "pass@" not in out and "SUPERSECRETVALUE" not in out
    assert storage.display("https://user:pass@example.com:9000/y") == "https://example.com:9000/y"


def test_allowed_roots_follow_symlinks_at_every_level(tmp_path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET-BYTES")
    (allowed / "sub" / "ok.png").write_bytes(b"x")
    (allowed / "link.png").symlink_to(outside / "secret.txt")  # a file link pointing out
    (allowed / "dirlink").symlink_to(outside, target_is_directory=True)  # a folder link pointing out
    (allowed / "inner.png").symlink_to(allowed / "sub" / "ok.png")  # a link that stays inside
    roots = [str(allowed)]
    assert storage.within_roots(str(allowed / "sub" / "ok.png"), roots)
    assert storage.within_roots(f"file://{allowed}/sub/ok.png", roots)
    assert storage.within_roots(str(allowed / "inner.png"), roots)
    assert not storage.within_roots(str(allowed / "link.png"), roots)
    assert not storage.within_roots(str(allowed / "dirlink" / "secret.txt"), roots)
    assert not storage.within_roots(f"file://{allowed}/link.png", roots)
    assert not storage.within_roots(str(allowed / ".." / "outside" / "secret.txt"), roots)
    assert not storage.within_roots(str(allowed) + "-sibling/x.png", roots)  # a prefix is not a parent
    assert not storage.within_roots(str(allowed / "a\x00b.png"), roots)
    # a root given through a link is the folder it names
    (tmp_path / "rootlink").symlink_to(allowed, target_is_directory=True)
    assert storage.within_roots(str(allowed / "sub" / "ok.png"), [str(tmp_path / "rootlink")])
    # confine returns the resolved location to read, or refuses without the file's bytes
    assert storage.confine(str(allowed / "inner.png"), roots) == str(allowed / "sub" / "ok.png")
    assert storage.confine(str(allowed / "link.png"), None) == str(allowed / "link.png")
    with pytest.raises(storage.OutsideRoots) as e:
        storage.confine(str(allowed / "link.png"), roots)
    assert "SECRET" not in str(e.value) and "outside the allowed locations" in str(e.value)


def test_allowed_roots_on_object_stores_fold_dot_dot():
    roots = ["s3://bucket/data"]
    assert storage.within_roots("s3://bucket/data/x.png", roots)
    assert not storage.within_roots("s3://bucket/data/../private/x.png", roots)
    assert not storage.within_roots("s3://bucket/database/x.png", roots)
    assert not storage.within_roots("/data/x.png", roots)  # another protocol is not under an S3 root
