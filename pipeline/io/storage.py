"""Storage: every read and write of prfeval goes through fsspec URIs.

A URI is a local path, ``file://...``, ``s3://bucket/key`` or any fsspec protocol. S3 endpoints and credentials come
from the standard AWS environment (``AWS_ENDPOINT_URL``, profiles, instance roles) and are never written anywhere:
:func:`redact` strips them from any text that leaves the process.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import fsspec

LOCAL_PROTOCOLS = ("file", "local")


def protocol(uri: str) -> str:
    """The URI's scheme; ``file`` for plain paths."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", uri)
    return m.group(1).lower() if m else "file"


def is_local(uri: str) -> bool:
    return protocol(uri) in LOCAL_PROTOCOLS


def _strip_file(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def storage_options(uri: str) -> dict:
    """fsspec options for ``uri``: the S3 endpoint from ``AWS_ENDPOINT_URL`` when set, retries for flaky stores."""
    if protocol(uri) in ("s3", "s3a"):
        opts: dict = {"config_kwargs": {"retries": {"max_attempts": 8, "mode": "adaptive"}}}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["client_kwargs"] = {"endpoint_url": endpoint}
        return opts
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the protocol-less path for ``uri``."""
    if is_local(uri):
        return fsspec.filesystem("file"), os.path.abspath(_strip_file(uri))
    fs, path = fsspec.core.url_to_fs(uri, **storage_options(uri))
    return fs, path


def arrow_filesystem(uri: str):
    """A pyarrow filesystem and path for ``uri`` (pyarrow datasets and Parquet reads go through fsspec too)."""
    import pyarrow.fs as pafs

    if is_local(uri):
        return pafs.LocalFileSystem(), os.path.abspath(_strip_file(uri))
    fs, path = filesystem(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI, keeping its scheme."""
    if is_local(base):
        return os.path.join(_strip_file(base), *parts)
    return posixpath.join(base.rstrip("/"), *parts)


def parent(uri: str) -> str:
    if is_local(uri):
        return os.path.dirname(os.path.abspath(_strip_file(uri)))
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"


def resolve(uri: str, base_dir: str) -> str:
    """Resolve ``uri`` against ``base_dir`` when it is relative; absolute URIs are returned normalised."""
    if "://" in uri:
        if is_local(uri):
            return os.path.normpath(_strip_file(uri))
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    if os.path.isabs(uri):
        return os.path.normpath(uri)
    if is_local(base_dir):
        return os.path.normpath(os.path.join(_strip_file(base_dir), uri))
    scheme, rest = base_dir.split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, uri))}"


def canonical(uri: str) -> str:
    """A comparable form of a URI: local paths absolute, remote ones normalised, no trailing slash."""
    if is_local(uri):
        return os.path.abspath(_strip_file(uri)).rstrip("/") or "/"
    scheme, rest = uri.split("://", 1)
    return f"{scheme.lower()}://{posixpath.normpath(rest).rstrip('/')}"


class OutsideRoots(PermissionError):
    """A location that resolves outside the locations the user allowed."""


def real(uri: str) -> str:
    """What ``uri`` names once resolved: a local path absolute with every symlink followed (at every level), a
    remote URI normalised (``..`` folded; object stores have no links). Raises ``ValueError`` for a local path that
    cannot name a file (a NUL byte in it)."""
    if is_local(uri):
        path = _strip_file(uri)
        if "\x00" in path:
            raise ValueError("the path contains a NUL byte")
        return os.path.realpath(path)
    return canonical(uri)


def within_roots(uri: str, roots: Iterable[str]) -> bool:
    """True when what ``uri`` resolves to lies under one of ``roots`` (resolved the same way).

    The check is on the resolved location, not on how the URI is spelled: a symlink inside an allowed folder that
    points elsewhere, or a ``..`` that climbs out, is outside."""
    try:
        target = real(uri)
    except (ValueError, OSError):
        return False
    for root in roots:
        try:
            r = real(root)
        except (ValueError, OSError):
            continue
        if protocol(r) != protocol(target) and not (is_local(r) and is_local(target)):
            continue
        if target == r or r in ("/", "") or target.startswith(r.rstrip("/") + "/"):
            return True
    return False


def confine(uri: str, roots: Iterable[str] | None) -> str:
    """The location to read for ``uri``: its resolved form (:func:`real`) when ``roots`` allow it, else
    :class:`OutsideRoots`. With ``roots`` None nothing is checked and ``uri`` is returned as given. Reading the
    resolved path, not the spelled one, means the file opened is the file checked."""
    if roots is None:
        return uri
    roots = list(roots)
    if not within_roots(uri, roots):
        raise OutsideRoots(f"{display(uri)!r} lies outside the allowed locations")
    return real(uri)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: a local file appears whole (temp file + rename); an object store PUT is atomic already."""
    fs, path = filesystem(uri)
    if is_local(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    with fs.open(path, "wb") as f:
        f.write(data)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def listdir(uri: str, suffix: str = "") -> list[str]:
    """Full URIs of the files directly under ``uri`` ending with ``suffix`` (empty when the folder is absent)."""
    fs, path = filesystem(uri)
    try:
        fs.invalidate_cache(path)
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = [e["name"] for e in entries if e.get("type") == "file" and e["name"].endswith(suffix)]
    return sorted(join(uri, posixpath.basename(n)) for n in names)


def sha256_of(uri: str) -> str:
    return hashlib.sha256(read_bytes(uri)).hexdigest()


_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN")


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Remove credentials from text: user:password in URLs and the values of secret AWS variables."""
    if not text:
        return text
    out = re.sub(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s:]+(:[^/@\s]*)?@", r"\g<scheme>***@", text)
    for secret in [*(os.environ.get(k, "") for k in _SECRET_ENV), *extra_secrets]:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def display(uri: str) -> str:
    """A URI as it may appear in outputs: without any credentials embedded in it."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return uri
