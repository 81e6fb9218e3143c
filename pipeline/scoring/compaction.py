"""The results folder's layout: per-group parts while a run goes, a few compacted files per table once it ends.

Layout (docs/architecture.md, "Results folder layout")::

    <table>/_parts/<key>.parquet            one reference group's rows, written while the run goes
    <table>/part-<gen>-<bucket>.parquet     compacted files of a finished run (generation ``gen``)
    _tables.json                            the index: per table its bucket count and compacted files, and for
                                            each file the group keys it holds, in row order, with their row counts

A group's parts are the unit of progress: a run is resumed from the keys in the index and the parts present.
When a run ends, :func:`compact` folds the parts into the compacted files: groups are bucketed by a stable hash of
their key (the bucket count is chosen once, for files of about :data:`TARGET_FILE_BYTES`, and recorded in the
index), only the buckets holding a new part or a key to drop are rewritten (the old file's rows of the other
keys, then the parts, groups sorted by ref_id), the index is published with one atomic write, and only then are
the superseded files and the folded parts deleted. A reader that finds the index reads exactly its files, so it
sees one generation whole; a crash before the index is written leaves the parts (and unreferenced new files) and
the rerun folds them again; a crash after it leaves parts the index already covers, which readers ignore and the
rerun deletes. Folders without an index (written before compaction existed, or a run that never ended) are read
from their per-group files: ``<table>/*.parquet`` and ``<table>/_parts/*.parquet``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import posixpath
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import storage
from pipeline.io.tables import COMPRESSION

INDEX = "_tables.json"
PARTS = "_parts"
FORMAT = 1
TARGET_FILE_BYTES = 128 << 20  # compacted files of about this size (estimated from the parts' sizes)
ROW_GROUP_ROWS = 122_880  # DuckDB's row group size; pyarrow scans batch within it
ORPHAN_GRACE_S = 600.0  # an unreferenced compacted file younger than this may be a running compaction's
TABLE_NAMES = ("images", "pairs", "errors")
_COMPACTED = re.compile(r"^part-[0-9a-f]{12}-\d{5}\.parquet$")
_READERS = 16


def _step(name: str) -> None:
    """A named point of :func:`compact` (``written``: a new file; ``published``: the index)."""


def index_uri(output: str) -> str:
    return storage.join(output, INDEX)


def part_uri(output: str, table: str, key: str) -> str:
    return storage.join(output, table, PARTS, f"{key}.parquet")


def read_index(output: str) -> dict | None:
    """The published index of ``output``, or None (no compaction has ended there)."""
    try:
        return json.loads(storage.read_text(index_uri(output)))
    except (FileNotFoundError, NotADirectoryError):  # no index, or ``output`` is a file (e.g. a manifest)
        return None


def _name(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/"))


def _ls(folder: str) -> list[dict]:
    """Files directly under ``folder``: ``{"uri", "size", "mtime"}`` (empty when absent)."""
    fs, path = storage.filesystem(folder)
    try:
        fs.invalidate_cache(path)
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for e in entries:
        if e.get("type") != "file" or not e["name"].endswith(".parquet"):
            continue
        mtime = e.get("mtime") or e.get("LastModified") or e.get("created")
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        out.append({"uri": storage.join(folder, _name(e["name"])), "size": int(e.get("size") or 0),
                    "mtime": float(mtime) if mtime is not None else None})  # fmt: skip
    return sorted(out, key=lambda f: f["uri"])


def table_entry(index: dict | None, table: str) -> dict:
    return ((index or {}).get("tables") or {}).get(table) or {"buckets": 0, "files": []}


def index_keys(index: dict | None, table: str, *, with_rows: bool = False) -> set[str]:
    """Keys the index holds for ``table`` (``with_rows``: only those with at least one row)."""
    return {k for f in table_entry(index, table)["files"] for k, n in f["groups"] if n or not with_rows}


def list_parts(output: str, table: str, index: dict | None) -> tuple[dict[str, dict], list[dict]]:
    """The parts of ``table`` not yet folded: key -> file (``_parts/`` wins over an old-layout file of the same
    key), and every such file (to delete once folded). Old-layout files are ``<table>/<key>.parquet``."""
    top = [f for f in _ls(storage.join(output, table)) if not _COMPACTED.match(_name(f["uri"]))]
    listed = {f["name"] for f in table_entry(index, table)["files"]}
    top = [f for f in top if _name(f["uri"]) not in listed]
    sub = _ls(storage.join(output, table, PARTS))
    found = {_name(f["uri"]).removesuffix(".parquet"): f for f in [*top, *sub]}
    return found, [*top, *sub]


def table_files(output: str, table: str) -> list[str]:
    """The files a reader reads for ``table``: the index's when published, else the per-group files."""
    index = read_index(output)
    if index is not None:
        return [storage.join(output, table, f["name"]) for f in table_entry(index, table)["files"]]
    found, _ = list_parts(output, table, None)
    return [f["uri"] for _, f in sorted(found.items())]


def bucket_of(key: str, buckets: int) -> int:
    return int(hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:12], 16) % max(1, buckets)


def _choose_buckets(parts: dict[str, dict], expected_groups: int | None) -> int:
    if not parts:
        return 1
    groups = max(len(parts), expected_groups or 0)
    per_group = sum(f["size"] for f in parts.values()) / len(parts)
    return max(1, min(groups, math.ceil(per_group * groups / TARGET_FILE_BYTES)))


def _read(uri: str) -> pa.Table:
    """A whole Parquet file, fetched in one request (a part is small; footer-then-columns would be several)."""
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def _order(piece: tuple[str, pa.Table]) -> tuple:
    key, t = piece
    ref = t.column("ref_id")[0].as_py() if t.num_rows and "ref_id" in t.column_names else None
    return (ref is None, ref or "", key)


def _write(uri: str, table: pa.Table) -> int:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS)
    data = buf.getvalue()
    storage.write_bytes(uri, data)
    return len(data)


def remove(uris: list[str]) -> None:
    """Delete ``uris`` (one folder's filesystem) if present; one batched request on an object store."""
    if not uris:
        return
    fs, _ = storage.filesystem(uris[0])
    paths = [storage.filesystem(u)[1] for u in uris]
    if not storage.is_local(uris[0]):
        with contextlib.suppress(FileNotFoundError):
            fs.rm(paths)  # batched deletes on object stores
            return
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(p)


def compact(
    output: str,
    *,
    expected_groups: int | None = None,
    drop: set[str] | frozenset = frozenset(),
    orphans_before: float | None = None,
) -> bool:
    """Fold the parts of ``output`` into its compacted tables and publish the index; True when it was written.

    ``expected_groups`` (the run's group count) sizes the buckets on a first compaction; ``drop`` are keys whose
    rows leave every table (e.g. unscored rows that are all scored now). Unreferenced compacted files (of a
    compaction that crashed before publishing) are deleted when older than ``orphans_before`` (a timestamp; the
    driver passes its command's start, default: :data:`ORPHAN_GRACE_S` ago). Nothing is written when there is
    nothing to fold and an index exists. A file that vanishes meanwhile (a concurrent compaction of the same
    run deleted what it folded) starts it over, from the index then published.
    """
    for attempt in range(5):
        try:
            return _compact_once(output, expected_groups, set(drop), orphans_before)
        except FileNotFoundError:
            if attempt == 4:
                raise
    return False


def _compact_once(
    output: str, expected_groups: int | None, drop: set[str], orphans_before: float | None
) -> bool:
    index = read_index(output)
    listed = {t: list_parts(output, t, index) for t in TABLE_NAMES}
    finished_now = set(listed["images"][0])
    if (
        index is not None
        and not any(found for found, _ in listed.values())
        and not (drop & set().union(*(index_keys(index, t) for t in TABLE_NAMES)))
    ):
        return False
    gen = uuid.uuid4().hex[:12]
    if orphans_before is None:
        orphans_before = time.time() - ORPHAN_GRACE_S
    tables, superseded = {}, []
    with ThreadPoolExecutor(_READERS) as pool:
        for table in TABLE_NAMES:
            found, _ = listed[table]
            entry = table_entry(index, table)
            buckets = int(entry.get("buckets") or 0) or _choose_buckets(found, expected_groups)
            changed = finished_now | set(found) | drop
            affected = {bucket_of(k, buckets) for k in found}
            affected |= {f["bucket"] for f in entry["files"] if any(k in changed for k, _ in f["groups"])}
            files = [f for f in entry["files"] if f["bucket"] not in affected]
            for b in sorted(affected):
                pieces: list[tuple[str, pa.Table]] = []
                for f in (f for f in entry["files"] if f["bucket"] == b):
                    uri = storage.join(output, table, f["name"])
                    old, offset = _read(uri), 0
                    for key, n in f["groups"]:
                        if key not in changed:
                            pieces.append((key, old.slice(offset, n)))
                        offset += n
                    superseded.append(uri)
                keys = sorted(k for k in found if bucket_of(k, buckets) == b and k not in drop)
                pieces += zip(keys, pool.map(_read, [found[k]["uri"] for k in keys]), strict=True)
                if not pieces:
                    continue
                pieces.sort(key=_order)
                merged = pa.concat_tables([t for _, t in pieces], promote_options="permissive")
                name = f"part-{gen}-{b:05d}.parquet"
                size = _write(storage.join(output, table, name), merged.combine_chunks())
                files.append({"name": name, "bucket": b, "rows": merged.num_rows, "bytes": size,
                              "groups": [[k, t.num_rows] for k, t in pieces]})  # fmt: skip
                _step("written")
            tables[table] = {"buckets": buckets, "files": sorted(files, key=lambda f: f["bucket"])}
    record = {"format": FORMAT, "generation": gen, "tables": tables}
    storage.write_text(index_uri(output), json.dumps(record, separators=(",", ":")))
    _step("published")
    folded = [f["uri"] for t in TABLE_NAMES for f in listed[t][1]]
    remove(superseded + folded)
    _remove_orphans(output, record, orphans_before)
    return True


def _remove_orphans(output: str, record: dict, before: float) -> None:
    """Compacted files no index references, written before ``before``: left by a compaction that crashed before
    publishing. Younger ones are kept: they may be another compaction's of the same run, not yet published."""
    for table in TABLE_NAMES:
        keep = {f["name"] for f in table_entry(record, table)["files"]}
        old = [f["uri"] for f in _ls(storage.join(output, table))
               if _COMPACTED.match(_name(f["uri"])) and _name(f["uri"]) not in keep
               and f["mtime"] is not None and f["mtime"] < before]  # fmt: skip
        remove(old)
