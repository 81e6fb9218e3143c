"""The one table reader and Parquet writer: CSV, TSV and Parquet, the caller's error class, no bytes in messages."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io import storage, tables


class MyError(ValueError):
    pass


def test_reads_csv_tsv_and_parquet_alike(tmp_path, s3):
    want = pa.table({"a": ["1", "2"], "b": ["x", "y"]})
    for base in (str(tmp_path), s3.uri("t")):
        storage.write_text(storage.join(base, "t.csv"), "\ufeffa,b\n1,x\n2,y\n")  # a BOM is not a column name
        storage.write_text(storage.join(base, "t.tsv"), "a\tb\n1\tx\n2\ty\n")
        tables.write_parquet(storage.join(base, "t.parquet"), want)
        for name in ("t.csv", "t.tsv", "t.parquet"):
            got = tables.read_table(storage.join(base, name), error=MyError, column_types={"a": pa.string()})
            assert got.column_names == ["a", "b"], name
            assert got.column("b").to_pylist() == ["x", "y"], name


def test_parquet_is_written_with_the_one_compression():
    meta = pq.ParquetFile(io.BytesIO(tables.parquet_bytes(pa.table({"a": [1, 2, 3]})))).metadata
    assert meta.row_group(0).column(0).compression.lower() == tables.COMPRESSION


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("missing.csv", None, "no such file"),
        ("empty.csv", b"  \n", "the file is empty"),
        ("latin.csv", b"a,b\n\xe9t\xe9,SECRET\n", "not UTF-8 text"),
        ("ragged.csv", b"a,b\n1,2,3\n", "not a well-formed table"),
        ("bad.parquet", b"PAR1 not really SECRET", "not a readable Parquet file"),
    ],
)
def test_bad_files_raise_the_callers_error_in_one_line(tmp_path, name, content, needle):
    uri = str(tmp_path / name)
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(MyError) as e:
        tables.read_table(uri, error=MyError, what="manifest")
    msg = str(e.value)
    assert needle in msg and msg.startswith("manifest ") and "\n" not in msg
    assert "SECRET" not in msg


def test_a_folder_is_not_a_table(tmp_path):
    with pytest.raises(MyError, match="folder"):
        tables.read_input(str(tmp_path), error=MyError)
