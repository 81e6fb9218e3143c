"""Read-only DuckDB over results folders: views ``images``, ``pairs``, ``errors`` and ``runs``.

Registration
------------
Every table's Parquet files, from every results folder given (local, ``s3://`` or any fsspec URI) — the compacted
files its index ``_tables.json`` lists, or the per-group files of an older output or of a run that never ended
(:func:`pipeline.scoring.results.dataset`) — become one pyarrow dataset per folder (through :func:`pipeline.io.storage.arrow_filesystem`, so S3 goes through fsspec and no
DuckDB extension is needed — httpfs cannot be downloaded offline), with one schema unified over all files of all
folders (declared columns first, carried and joined columns after, null-typed columns promoted). The folders'
datasets are combined into one and registered with DuckDB as an Arrow object: DuckDB scans it lazily, pushing
projections and filters down, so nothing is loaded up front and a query reads only what it needs. Rows of
different runs are told apart by ``run_id``.

``runs`` is the runs registry (:mod:`pipeline.runs.registry`) when a registry root is given, else one row per results
folder built from its ``run.json`` with the same columns.

Read-only
---------
Two independent guards:

1. the SQL must be exactly one statement of type SELECT (which includes ``WITH``, ``FROM``-first, ``VALUES``,
   ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``) or EXPLAIN of one (the explained statement is checked the same way);
   anything else — COPY, ATTACH, DETACH, INSTALL, LOAD, CREATE, INSERT, UPDATE, DELETE, DROP, ALTER, PRAGMA, SET,
   RESET, EXPORT, IMPORT, CALL, CHECKPOINT, VACUUM, USE, several statements — is refused with
   :class:`ReadOnlyError`, before anything runs. Statement types come from DuckDB's own parser
   (``duckdb.extract_statements``), not from patterns over the text;
2. after the views are registered the connection disables external access (no file or network access at all:
   ``read_csv('/etc/…')``, ``COPY … TO`` or a ``read_parquet`` of another location fail with a permission error)
   and locks its configuration, so no statement can turn it back on. The registered Arrow datasets keep working:
   they are read by pyarrow, not by DuckDB's file system.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.io import storage
from pipeline.runs import registry as runs
from pipeline.scoring import results

VIEWS = ("images", "pairs", "errors", "runs")
_EXPLAIN = re.compile(r"^\s*explain(\s+analy[sz]e)?\s+", re.IGNORECASE)


class QueryError(ValueError):
    """The query or its inputs cannot be used (a usage error)."""


class ReadOnlyError(QueryError):
    """The SQL would write, attach, load, configure, or is not exactly one query."""


# ---------------------------------------------------------------------------------------------- read-only guard


def _types(sql: str) -> list:
    import duckdb

    try:
        return [s.type for s in duckdb.extract_statements(sql)]
    except duckdb.Error as e:
        raise QueryError(f"SQL does not parse: {e}") from None


def check_read_only(sql: str) -> None:
    """Raise :class:`ReadOnlyError` unless ``sql`` is one SELECT, or one EXPLAIN of a SELECT."""
    import duckdb

    kinds = _types(sql)
    if not kinds:
        raise ReadOnlyError("no SQL statement given")
    if len(kinds) > 1:
        raise ReadOnlyError(f"one statement at a time, got {len(kinds)}; queries are read-only and run alone")
    kind = kinds[0]
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN.sub("", sql, count=1)
        if inner == sql:  # e.g. a comment before EXPLAIN: cannot tell what is explained
            raise ReadOnlyError("EXPLAIN must start the statement")
        check_read_only(inner)
        return
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise ReadOnlyError(
            f"{name} statements are refused: queries are read-only (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"
        )


# ---------------------------------------------------------------------------------------------- datasets


def _files(folder: str, name: str) -> list[str]:
    return results.table_files(folder, name)


def folder_dataset(uris: list[str], schema: pa.Schema) -> ds.Dataset:
    """A lazy dataset over Parquet files of one folder (one filesystem), read with ``schema``."""
    return results.files_dataset(uris, schema)


def table_dataset(folders: list[str], name: str, declared: pa.Schema | None = None):
    """Table ``name`` of every folder (its compacted files, or per-group files of older outputs) as one lazy
    dataset with one schema unified over all folders (or an empty table)."""
    declared = declared if declared is not None else results.TABLES[name]
    per_folder = {f: _files(f, name) for f in folders}
    all_uris = [u for uris in per_folder.values() for u in uris]
    if not all_uris:
        return declared.empty_table()
    try:
        schema = results.unified_schema(declared, all_uris)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise QueryError(f"the {name} files disagree on a column's type: {e}") from None
    parts = [folder_dataset(uris, schema) for uris in per_folder.values() if uris]
    return parts[0] if len(parts) == 1 else ds.dataset(parts)


def runs_dataset(folders: list[str], registry: str | None):
    """The ``runs`` view: the registry's files when ``registry`` is given, else the folders' ``run.json``."""
    if registry:
        return table_dataset([registry], "runs", runs.RUNS)
    rows = []
    for folder in folders:
        run = results.read_run(folder)
        if run and run.get("run_id"):
            rows.append(runs.record_from_run(run, results_uri=folder))
    return runs.to_table(rows)


def connect(folders: list[str], *, registry: str | None = None):
    """An in-memory DuckDB connection with the four views registered, external access off, config locked."""
    import duckdb

    missing = [f for f in folders if not _any_table(f)]
    if missing:
        raise QueryError(
            "not a results folder (no images/, pairs/, errors/ or run.json): "
            + ", ".join(storage.display(m) for m in missing)
        )
    if registry and not runs.files(registry):
        raise QueryError(f"the registry {storage.display(registry)} holds no runs (runs/*.parquet)")
    con = duckdb.connect(":memory:")
    for name in VIEWS[:3]:
        con.register(name, table_dataset(folders, name))
    con.register("runs", runs_dataset(folders, registry))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _any_table(folder: str) -> bool:
    return (
        storage.exists(storage.join(folder, "run.json"))
        or results.has_results(folder)
        or any(_files(folder, n) for n in VIEWS[1:3])
    )


def execute(con, sql: str):
    """Run one read-only query; returns a pyarrow RecordBatchReader (streamed)."""
    import duckdb

    check_read_only(sql)
    try:
        relation = con.sql(sql)
        if relation is None:  # not a query after all: refused by check_read_only already, kept as a guard
            raise ReadOnlyError("the statement returns no rows and is not a query")
        return relation.to_arrow_reader()
    except duckdb.Error as e:
        raise QueryError(storage.redact(str(e))) from None


__all__ = [
    "VIEWS",
    "QueryError",
    "ReadOnlyError",
    "check_read_only",
    "connect",
    "execute",
    "runs_dataset",
    "table_dataset",
]
