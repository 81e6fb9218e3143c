"""The manifest: reading, validation and grouping by reference, held as columns.

Validation happens up front, on the driver, before any work is scheduled:

- a missing required column, a column named twice, an empty file, unreadable text or a duplicate ``dist_id`` make
  the whole manifest unusable (:class:`ManifestError`, naming the rows or columns);
- a row that is only locally wrong (an empty URI, a ``bytes`` value that is not a non-negative integer within
  int64, a text value that is not UTF-8 in a binary Parquet column) becomes an error row for the errors table, and
  every other row goes on. What a row's URI holds is checked later, per row, by the load stage.

The manifest stays an Arrow table (a few dozen bytes per row, no Python object per row): the file is read as a
stream, checks are vectorised, and groups (one per ``ref_id``, in order of first appearance, rows in manifest
order) are built block by block from a sort index, as records (:func:`groups`) or as Arrow tables of input rows
for Ray Data (:class:`pipeline.scoring.grouping.ManifestGroups`). Relative URIs resolve against the manifest's own folder (references up
front, distorted images as their block is built).
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.io import schemas, storage
from pipeline.io.records import ErrorRow, ReferenceGroup, group_key

MANIFEST_COLUMNS = [f.name for f in schemas.MANIFEST]
TEXT_COLUMNS = [c for c in MANIFEST_COLUMNS if c != "bytes"]
REQUIRED_TEXT = ("ref_id", "dist_id", "ref_uri", "dist_uri", "codec")  # an empty value is a row error
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)  # what str.strip() removes
INT64_MAX = 2**63 - 1


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (usage error)."""


@dataclass
class Manifest:
    """A validated manifest: good rows as an Arrow table, per-row errors, and where relative URIs resolve from.

    ``table`` holds the declared columns first (``ref_uri`` resolved, ``dist_uri`` as written, low-cardinality
    text dictionary-encoded, ``bytes`` int64), then the carried columns."""

    uri: str
    table: pa.Table
    errors: list[dict] = field(default_factory=list)  # rows for the errors table (stage "manifest")

    @property
    def base_dir(self) -> str:
        return storage.parent(self.uri)

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.table.column_names if c not in MANIFEST_COLUMNS]

    @property
    def rows(self) -> pd.DataFrame:
        """The good rows as a DataFrame (URIs resolved, ``bytes`` as Int64): for small manifests and tests."""
        t = _plain_text(self.table)
        df = t.to_pandas()
        for col in TEXT_COLUMNS:
            df[col] = pd.Series(t[col].to_pylist(), dtype=object)
        df["dist_uri"] = [storage.resolve(u, self.base_dir) for u in df["dist_uri"]]
        df["bytes"] = pd.array(t["bytes"].to_pylist(), dtype="Int64")
        return df

    @cached_property
    def grouping(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, offsets): row indices grouped by reference (first appearance), group ``g`` being
        ``order[offsets[g]:offsets[g + 1]]``."""
        codes = _codes(self.table["ref_id"])
        order = np.asarray(pc.sort_indices(codes), dtype=np.int64)  # stable: manifest order within a group
        counts = np.bincount(np.asarray(codes, dtype=np.int64), minlength=0)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return order.astype(np.int32) if len(order) < 2**31 else order, offsets

    @property
    def n_groups(self) -> int:
        return len(self.grouping[1]) - 1

    def ref_ids(self) -> pa.Array:
        """The groups' ``ref_id`` in group order."""
        return _dictionary(self.table["ref_id"]).dictionary

    def block(self, groups: np.ndarray) -> pa.Table:
        """The manifest rows of groups ``groups`` (group numbers, ascending), grouped, as one table."""
        order, offsets = self.grouping
        idx = np.concatenate([order[offsets[g] : offsets[g + 1]] for g in groups]) if len(groups) else []
        return self.table.take(pa.array(idx, pa.int64()))


def _dictionary(col: pa.ChunkedArray) -> pa.DictionaryArray:
    arr = col.combine_chunks()
    return arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)


def _codes(col: pa.ChunkedArray) -> pa.Array:
    return _dictionary(col).indices


def _plain_text(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary-encoded columns as plain strings."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


# ---------------------------------------------------------------- reading


def _check_names(uri: str, names: list[str]) -> None:
    """A column named twice is ambiguous (which one is the URI?): the manifest is refused, naming it."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ManifestError(
            f"{storage.display(uri)}: column(s) named more than once: {', '.join(map(repr, twice))[:500]}; "
            "each column must appear once"
        )


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:500]


class _Utf8Checked:
    """A binary file read through an incremental UTF-8 check; the first offending byte is remembered."""

    def __init__(self, f):
        self.f, self.pos, self.bad, self.closed = f, 0, None, False
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        if self.bad is None:
            pending = len(self.decoder.getstate()[0])
            try:
                self.decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                self.bad = (self.pos - pending + e.start, e.object[e.start : e.start + 1])
        self.pos += len(chunk)
        return chunk

    def drain(self) -> None:
        while self.bad is None and self.read(1 << 20):
            pass


def _skip_blank(uri: str, f) -> None:
    """Raise when the file holds nothing but whitespace; rewind it otherwise."""
    while chunk := f.read(1 << 16):
        if chunk.strip():
            f.seek(0)
            return
    raise ManifestError(f"{storage.display(uri)}: the manifest is empty")


def _read_table(uri: str, f) -> pa.Table:
    shown = storage.display(uri)
    if uri.lower().endswith((".parquet", ".pq")):
        try:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
        except (pa.ArrowInvalid, OSError) as e:
            raise ManifestError(f"{shown}: not a readable Parquet file ({_line(e)})") from None
        _check_names(uri, names)
        try:
            return pf.read()
        except (pa.ArrowInvalid, OSError) as e:
            raise ManifestError(f"{shown}: not a readable Parquet file ({_line(e)})") from None
    checked = _Utf8Checked(f)
    failure = None
    try:
        table = pacsv.read_csv(
            pa.PythonFile(checked, mode="r"),
            read_options=pacsv.ReadOptions(autogenerate_column_names=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in TEXT_COLUMNS}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as e:
        failure, table = e, None
    checked.drain()
    if checked.bad is not None:
        at, byte = checked.bad
        raise ManifestError(f"{shown}: not UTF-8 text (byte {at}: {byte!r}); save the CSV as UTF-8")
    if failure is not None:
        raise ManifestError(f"{shown}: not a well-formed CSV ({_line(failure)})")
    _check_names(uri, table.column_names)
    return table


def _open_table(uri: str) -> pa.Table:
    shown = storage.display(uri)
    try:
        fs, path = storage.filesystem(uri)
        with fs.open(path, "rb") as f:
            _skip_blank(uri, f)
            return _read_table(uri, f)
    except FileNotFoundError:
        raise ManifestError(f"{shown}: no such manifest") from None
    except OSError as e:
        raise ManifestError(f"{shown}: cannot read the manifest ({storage.redact(str(e))})") from None


# ---------------------------------------------------------------- cells


class _NotText:
    """Stands for a binary value that is not UTF-8 text (it is refused, never echoed)."""


_NOT_TEXT = _NotText()


def _cell_text(v):
    """A manifest cell as text: None for a missing value, :data:`_NOT_TEXT` for bytes that are not UTF-8."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, bytes | bytearray):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return _NOT_TEXT
    return str(v)


def _text_column(table: pa.Table, col: str) -> tuple[pa.ChunkedArray, np.ndarray | None]:
    """A declared text column as stripped strings (null when missing), and the rows whose value is not text."""
    if col not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, pa.string())]), None
    arr = table[col]
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    not_text = None
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    elif pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        try:
            arr = arr.cast(pa.string())
        except pa.ArrowInvalid:
            arr, not_text = _python_text(arr)
    elif not pa.types.is_string(arr.type):
        arr, not_text = _python_text(arr)
    return pc.utf8_trim(arr, characters=WHITESPACE), not_text


def _python_text(arr: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """A column of another type as text, value by value, as pandas shows it (an integer column with nulls as
    floats); non-UTF-8 bytes flagged."""
    values = [_cell_text(v) for v in arr.to_pandas()]
    not_text = np.array([isinstance(v, _NotText) for v in values], dtype=bool)
    text = [None if isinstance(v, _NotText) else v for v in values]
    return pa.chunked_array([pa.array(text, pa.string())]), not_text


def _number(v):
    """A ``bytes`` cell as something :func:`pandas.to_numeric` may read: text and numbers as they are, other values
    (a list, a mapping, raw bytes) as NaN, which is then refused."""
    if isinstance(v, bool):
        return float("nan")
    return v if isinstance(v, str | int | float) or v is None else float("nan")


def _shown(v) -> str:
    """A ``bytes`` cell for a message: a short repr of a plain value."""
    if isinstance(v, np.generic) and np.ndim(v) == 0:
        v = v.item()
    return repr(v)[:60] if isinstance(v, str | int | float) or v is None else f"<a {type(v).__name__}>"


def _bytes_column(table: pa.Table) -> tuple[pa.Array, np.ndarray, list]:
    """``bytes`` as int64 (null when missing or wrong), the rows whose value is wrong, and each row's value as it
    is shown in a message (only looked at for the wrong rows)."""
    n = table.num_rows
    if "bytes" not in table.column_names:
        return pa.nulls(n, pa.int64()), np.zeros(n, dtype=bool), []
    arr = table["bytes"].combine_chunks()
    if (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)) and not pa.types.is_boolean(
        arr.type
    ):
        as_float = arr.cast(pa.float64())
        vals = as_float.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            wrong = ~np.isnan(vals) & (
                ~np.isfinite(vals) | (vals < 0) | (vals >= 2.0**63) | (vals != np.round(vals))
            )
        shown = as_float if pa.types.is_floating(arr.type) or arr.null_count else arr
        good = pc.if_else(pa.array(wrong | np.isnan(vals)), pa.scalar(None, arr.type), arr)
        return good.cast(pa.int64(), safe=False), wrong, shown
    # text or another type: value by value, as pandas reads numbers
    cells = arr.to_pandas()
    as_num = pd.to_numeric(cells.map(_number), errors="coerce")
    finite = as_num.map(lambda v: v == v and abs(v) != float("inf"))
    wrong = cells.notna() & (
        as_num.isna()
        | ~finite
        | (as_num < 0)
        | (as_num.astype("float64") >= 2.0**63)
        | (as_num != as_num.round())
    )
    good = [None if w or v != v else int(v) for v, w in zip(as_num, wrong, strict=True)]
    return pa.array(good, pa.int64()), wrong.to_numpy(dtype=bool), cells


def _missing(v) -> bool:
    return v is None or (isinstance(v, str) and v == "")


def _error(ref_id, dist_id, uri, code: str, message: str) -> dict:
    """An errors-table row of stage ``manifest`` (built by :meth:`ErrorRow.make`), as the dict the driver writes."""
    return ErrorRow.make(
        "manifest",
        code,
        message,
        ref_id=None if _missing(ref_id) else ref_id,
        dist_id=None if _missing(dist_id) else dist_id,
        uri=None if _missing(uri) else uri,
    ).to_dict()


def _row_errors(cols: dict, rows: np.ndarray, code: str, what, blank: str = "") -> list[dict]:
    """An errors-table row for each manifest row in ``rows`` (row numbers as in the file, header = 1)."""
    if not len(rows):
        return []
    take = pa.array(rows, pa.int64())
    ref, dist, uri = (
        [None] * len(rows) if c == blank else pc.take(cols[c], take).to_pylist()
        for c in ("ref_id", "dist_id", "dist_uri")
    )
    return [_error(r, d, u, code, f"manifest row {i + 2}: {what(i)}")
            for i, r, d, u in zip(rows.tolist(), ref, dist, uri, strict=True)]  # fmt: skip


def _empty(col: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.equal(col, ""), True).to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------- validation


def read_manifest(uri: str) -> Manifest:
    """Read and validate a manifest (CSV with a header, or Parquet) from any URI."""
    shown = storage.display(uri)
    table = _open_table(uri)
    missing = [c for c in schemas.MANIFEST_REQUIRED if c not in table.column_names]
    if missing:
        raise ManifestError(
            f"{shown}: missing required column(s) {', '.join(missing)}; "
            f"required: {', '.join(schemas.MANIFEST_REQUIRED)}; found: {', '.join(table.column_names) or 'none'}"
        )
    if table.num_rows == 0:
        raise ManifestError(f"{shown}: the manifest has a header but no rows")
    n = table.num_rows
    cols: dict[str, pa.ChunkedArray] = {}
    errors: list[dict] = []
    bad = np.zeros(n, dtype=bool)
    for col in TEXT_COLUMNS:
        cols[col], not_text = _text_column(table, col)
        if not_text is not None and not_text.any():
            errors += _row_errors(cols, np.flatnonzero(not_text & ~bad), "bad_value",
                                  lambda _i, col=col: f"{col} is not UTF-8 text", blank=col)  # fmt: skip
            bad |= not_text
    cols["bytes"], wrong, shown_bytes = _bytes_column(table)
    errors += _row_errors(
        cols, np.flatnonzero(wrong & ~bad), "bad_value",
        lambda i: f"bytes={_shown(_value(shown_bytes, i))} is not a non-negative integer (at most {INT64_MAX})",
    )  # fmt: skip
    bad |= wrong
    for col in REQUIRED_TEXT:
        empty = _empty(cols[col])
        errors += _row_errors(
            cols, np.flatnonzero(empty & ~bad), "missing_value", lambda _i, col=col: f"empty {col}"
        )
        bad |= empty
    _refuse_duplicates(shown, cols["dist_id"])
    extras = [c for c in table.column_names if c not in MANIFEST_COLUMNS]
    good = pa.Table.from_arrays([cols[c] for c in MANIFEST_COLUMNS] + [table[c] for c in extras],
                                names=[*MANIFEST_COLUMNS, *extras])  # fmt: skip
    del table, cols
    if bad.any():
        rows = np.flatnonzero(~bad)
        good = good.filter(pa.array(~bad))
    else:
        rows = np.arange(n)
    good, conflicts = _resolve_refs(good, rows, storage.parent(uri))
    errors += conflicts
    for col in ("ref_id", "codec", "codec_version", "setting"):  # few distinct values: a code per row
        good = good.set_column(good.schema.get_field_index(col), col, _dictionary(good[col]))
    return Manifest(uri=uri, table=good, errors=errors)


def _value(values, i: int):
    return values.iat[i] if isinstance(values, pd.Series) else values[i].as_py()


def _refuse_duplicates(shown: str, dist_id: pa.ChunkedArray) -> None:
    """A dist_id on several rows (empty ids aside) makes the manifest unusable, naming the ids and rows."""
    ids = pc.if_else(pa.chunked_array([_empty(dist_id)]), pa.scalar(None, pa.string()), dist_id)
    counts = pa.table({"d": ids}).group_by("d").aggregate([("d", "count")])
    twice = counts.filter(pc.greater(counts["d_count"], 1))["d"]
    if not len(twice):
        return
    rows = np.flatnonzero(pc.fill_null(pc.is_in(ids, value_set=twice.combine_chunks()), False).to_numpy())
    by_id: dict[str, list[int]] = {}
    for i, d in zip(rows.tolist(), pc.take(ids, pa.array(rows)).to_pylist(), strict=True):
        by_id.setdefault(d, []).append(i)
    listing = "; ".join(
        f"{d!r} on rows {', '.join(str(i + 2) for i in idx)}" for d, idx in sorted(by_id.items())
    )
    raise ManifestError(
        f"{shown}: duplicate dist_id (each distorted image needs a unique id): {listing[:2000]}"
    )


def _resolve_refs(good: pa.Table, rows: np.ndarray, base: str) -> tuple[pa.Table, list[dict]]:
    """``ref_uri`` resolved (each distinct value once, kept as a dictionary), and the rows of any ``ref_id`` given
    several different ``ref_uri`` values taken out as error rows (one reference id must name one image)."""
    written = _dictionary(good["ref_uri"])
    resolved: dict[str, int] = {}
    remap = np.array([resolved.setdefault(storage.resolve(u, base), len(resolved))
                      for u in written.dictionary.to_pylist()], dtype=np.int32)  # fmt: skip
    uri_codes = remap[np.asarray(written.indices, dtype=np.int64)] if len(remap) else np.zeros(0, np.int32)
    ref_uri = pa.DictionaryArray.from_arrays(
        pa.array(uri_codes, pa.int32()), pa.array(list(resolved), pa.string())
    )
    good = good.set_column(good.schema.get_field_index("ref_uri"), "ref_uri", ref_uri)
    refs = _dictionary(good["ref_id"])
    ref_codes = np.asarray(refs.indices, dtype=np.int64)
    pairs = np.unique(ref_codes * max(len(resolved), 1) + uri_codes)
    per_ref = np.bincount(pairs // max(len(resolved), 1), minlength=len(refs.dictionary))
    conflicting = np.flatnonzero(per_ref > 1)
    if not len(conflicting):
        return good, []
    errors = []
    names, uris = refs.dictionary.to_pylist(), list(resolved)
    hit = np.isin(ref_codes, conflicting)
    dist_ids = pc.take(good["dist_id"], pa.array(np.flatnonzero(hit))).to_pylist()
    at = dict(zip(np.flatnonzero(hit).tolist(), dist_ids, strict=True))
    for code in sorted(conflicting.tolist(), key=lambda c: names[c]):
        ref_id = names[code]
        for k in np.flatnonzero(ref_codes == code).tolist():
            errors.append(_error(ref_id, at[k], uris[uri_codes[k]], "conflicting_ref",
                                 f"manifest row {rows[k] + 2}: ref_id {ref_id!r} is given several different "
                                 "ref_uri values"))  # fmt: skip
    return good.filter(pa.array(~hit)), errors


def read_codec_table(uri: str) -> pd.DataFrame:
    """The optional codec metadata table, keyed by (codec, codec_version)."""
    shown = storage.display(uri)
    try:
        data = storage.read_bytes(uri)
    except OSError as e:
        raise ManifestError(f"{shown}: cannot read the codec table ({storage.redact(str(e))})") from None
    if uri.lower().endswith((".parquet", ".pq")):
        df = pq.read_table(io.BytesIO(data)).to_pandas()
    else:
        df = pacsv.read_csv(io.BytesIO(data)).to_pandas()
    missing = [c for c in ("codec", "codec_version") if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{shown}: the codec table needs columns codec and codec_version (missing {missing})"
        )
    df["codec"] = df["codec"].astype(str)
    df["codec_version"] = df["codec_version"].map(lambda v: None if pd.isna(v) else str(v))
    if df.duplicated(["codec", "codec_version"]).any():
        raise ManifestError(f"{shown}: the codec table has duplicate (codec, codec_version) keys")
    return df


def groups(manifest: Manifest) -> list[ReferenceGroup]:
    """One record per reference: the reference and its distorted images, in manifest order."""
    from pipeline.scoring.grouping import ManifestGroups

    return list(ManifestGroups(manifest))


within_roots = storage.within_roots  # allowed locations are checked on what a URI resolves to


__all__ = [
    "MANIFEST_COLUMNS",
    "Manifest",
    "ManifestError",
    "group_key",
    "groups",
    "read_codec_table",
    "read_manifest",
    "within_roots",
]
