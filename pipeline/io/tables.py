"""Tables in and out: one reader for a CSV, TSV or Parquet table at any URI, one Parquet writer.

Readers take the caller's error class, so each command reports a bad input file in its own terms (a manifest
error, a triplet error, ...) while the checks and messages stay the same everywhere: a missing file, an unreadable
one, an empty one, a file that is not UTF-8 text or not a well-formed table. Messages show the URI without
credentials and never the file's bytes.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import storage

COMPRESSION = "zstd"  # the one compression choice of every Parquet file prfeval writes
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(uri: str) -> bool:
    return uri.lower().endswith(PARQUET_SUFFIXES)


def read_input(
    uri: str, *, error: type[Exception] = ValueError, what: str = "", allow_empty: bool = False
) -> bytes:
    """The bytes of an input file; a missing, unreadable or (unless ``allow_empty``) empty file raises ``error``."""
    shown = f"{what} {storage.display(uri)}".strip()
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise error(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise error(f"{shown}: is a folder, not a file") from None
    except OSError as e:
        raise error(f"{shown}: cannot read ({storage.redact(str(e))})") from None
    if not allow_empty and not data.strip():
        raise error(f"{shown}: the file is empty")
    return data


def parse_table(
    uri: str,
    data: bytes,
    *,
    error: type[Exception] = ValueError,
    what: str = "",
    column_types: dict[str, pa.DataType] | None = None,
    strings_can_be_null: bool = True,
) -> pa.Table:
    """``data`` (the bytes of ``uri``) as an Arrow table: Parquet by suffix, else UTF-8 CSV (TSV for ``.tsv``)."""
    import pyarrow.csv as pacsv

    shown = f"{what} {storage.display(uri)}".strip()
    if is_parquet(uri):
        try:
            return pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as e:
            raise error(f"{shown}: not a readable Parquet file ({e})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{shown}: not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r}); save the file as UTF-8"
        ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(autogenerate_column_names=False),
            parse_options=pacsv.ParseOptions(
                delimiter="\t" if uri.lower().endswith(".tsv") else ",", newlines_in_values=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=column_types or {}, strings_can_be_null=strings_can_be_null
            ),
        )
    except pa.ArrowInvalid as e:
        raise error(f"{shown}: not a well-formed table ({e})") from None


def read_table(uri: str, *, error: type[Exception] = ValueError, what: str = "", **options) -> pa.Table:
    """:func:`read_input` then :func:`parse_table`: the table at ``uri`` or ``error`` with a one-line reason."""
    return parse_table(uri, read_input(uri, error=error, what=what), error=error, what=what, **options)


def require_columns(
    columns, required, *, error: type[Exception] = ValueError, where: str = "table", needs: str = ""
) -> None:
    """Raise ``error`` naming the ``required`` columns missing from ``columns`` and the columns found."""
    columns = [str(c) for c in columns]
    missing = [c for c in required if c not in columns]
    if missing:
        raise error(
            f"{where}: missing column(s) {', '.join(missing)}{needs} (found: {', '.join(columns) or 'none'})"
        )


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=COMPRESSION)
    return buf.getvalue()


def write_parquet(uri: str, table: pa.Table) -> None:
    """Write ``table`` to ``uri`` as one Parquet object (written whole: a reader never sees half a file)."""
    storage.write_bytes(uri, parquet_bytes(table))
