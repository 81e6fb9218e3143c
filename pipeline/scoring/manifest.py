"""The manifest: reading, validation and grouping by reference.

Validation happens up front, on the driver, before any work is scheduled:

- a missing required column, a column named twice, an empty file, unreadable text or a duplicate ``dist_id`` make
  the whole manifest unusable (:class:`ManifestError`, naming the rows or columns);
- a row that is only locally wrong (an empty URI, a ``bytes`` value that is not a non-negative integer within
  int64, a text value that is not UTF-8 in a binary Parquet column) becomes an error row for the errors table, and
  every other row goes on. What a row's URI holds is checked later, per row, by the load stage.

Relative URIs resolve against the manifest's own folder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.io import schemas, storage
from pipeline.io.jsonable import plain
from pipeline.io.records import DistortedImage, ErrorRow, ReferenceGroup, group_key

MANIFEST_COLUMNS = [f.name for f in schemas.MANIFEST]


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (usage error)."""


@dataclass
class Manifest:
    """A validated manifest: good rows, per-row errors, and where relative URIs resolved from."""

    uri: str
    rows: pd.DataFrame  # declared columns first (strings, bytes as Int64), then carried columns
    errors: list[dict] = field(default_factory=list)  # rows for the errors table (stage "manifest")

    @property
    def base_dir(self) -> str:
        return storage.parent(self.uri)

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.rows.columns if c not in MANIFEST_COLUMNS]


def _check_names(uri: str, names: list[str]) -> None:
    """A column named twice is ambiguous (which one is the URI?): the manifest is refused, naming it."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ManifestError(
            f"{storage.display(uri)}: column(s) named more than once: {', '.join(map(repr, twice))[:500]}; "
            "each column must appear once"
        )


def _read_table(uri: str, data: bytes) -> pa.Table:
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        try:
            names = pq.ParquetFile(io.BytesIO(data)).schema_arrow.names
        except (pa.ArrowInvalid, OSError) as e:
            raise ManifestError(f"{storage.display(uri)}: not a readable Parquet file ({_line(e)})") from None
        _check_names(uri, names)
        try:
            return pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as e:
            raise ManifestError(f"{storage.display(uri)}: not a readable Parquet file ({_line(e)})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"{storage.display(uri)}: not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r}); "
            "save the CSV as UTF-8"
        ) from None
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(autogenerate_column_names=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in MANIFEST_COLUMNS if c != "bytes"},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        raise ManifestError(f"{storage.display(uri)}: not a well-formed CSV ({_line(e)})") from None
    _check_names(uri, table.column_names)
    return table


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:500]


INT64_MAX = 2**63 - 1


def _text(v):
    """A manifest cell as text: None for a missing value, a :class:`_NotText` for bytes that are not UTF-8."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, bytes | bytearray):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return _NOT_TEXT
    return str(v)


class _NotText:
    """Stands for a binary value that is not UTF-8 text (it is refused, never echoed)."""


_NOT_TEXT = _NotText()


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


def _missing(v) -> bool:
    return v is None or (isinstance(v, str) and v == "") or bool(pd.isna(v))


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


def _row_errors(df: pd.DataFrame, mask: pd.Series, code: str, what) -> list[dict]:
    """An errors-table row for each manifest row selected by ``mask`` (row numbers as in the file, header = 1)."""
    return [
        _error(
            df.at[i, "ref_id"],
            df.at[i, "dist_id"],
            df.at[i, "dist_uri"],
            code,
            f"manifest row {i + 2}: {what(i)}",
        )
        for i in df.index[mask]
    ]


def read_manifest(uri: str) -> Manifest:
    """Read and validate a manifest (CSV with a header, or Parquet) from any URI."""
    shown = storage.display(uri)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise ManifestError(f"{shown}: no such manifest") from None
    except OSError as e:
        raise ManifestError(f"{shown}: cannot read the manifest ({storage.redact(str(e))})") from None
    if not data.strip():
        raise ManifestError(f"{shown}: the manifest is empty")
    table = _read_table(uri, data)
    missing = [c for c in schemas.MANIFEST_REQUIRED if c not in table.column_names]
    if missing:
        raise ManifestError(
            f"{shown}: missing required column(s) {', '.join(missing)}; "
            f"required: {', '.join(schemas.MANIFEST_REQUIRED)}; found: {', '.join(table.column_names) or 'none'}"
        )
    if table.num_rows == 0:
        raise ManifestError(f"{shown}: the manifest has a header but no rows")
    df = table.to_pandas()
    df.index = range(len(df))
    for col in MANIFEST_COLUMNS:
        if col == "bytes":
            continue
        if col not in df.columns:
            df[col] = None
        df[col] = df[col].map(_text)
        df[col] = df[col].map(lambda v: v.strip() if isinstance(v, str) else v)
    errors: list[dict] = []
    bad = pd.Series(False, index=df.index)
    for col in MANIFEST_COLUMNS:
        if col == "bytes":
            continue
        binary = df[col].map(lambda v: isinstance(v, _NotText)).astype(bool)
        if binary.any():
            errors += _row_errors(df.assign(**{col: None}), binary & ~bad, "bad_value",
                                  lambda _i, col=col: f"{col} is not UTF-8 text")  # fmt: skip
            bad |= binary
            df[col] = df[col].map(lambda v: None if isinstance(v, _NotText) else v)
    if "bytes" in df.columns:
        as_num = pd.to_numeric(df["bytes"].map(_number), errors="coerce")
        finite = as_num.map(lambda v: v == v and abs(v) != float("inf"))
        wrong = df["bytes"].notna() & (
            as_num.isna()
            | ~finite
            | (as_num < 0)
            | (as_num.astype("float64") >= 2.0**63)
            | (as_num != as_num.round())
        )
        errors += _row_errors(
            df, wrong & ~bad, "bad_value",
            lambda i: f"bytes={_shown(df.at[i, 'bytes'])} is not a non-negative integer (at most {INT64_MAX})",
        )  # fmt: skip
        bad |= wrong
        df["bytes"] = pd.array(
            [None if w or v != v else int(v) for v, w in zip(as_num, wrong, strict=True)], dtype="Int64"
        )
    else:
        df["bytes"] = pd.array([None] * len(df), dtype="Int64")
    for col in ("ref_id", "dist_id", "ref_uri", "dist_uri", "codec"):
        empty = df[col].isna() | (df[col] == "")
        errors += _row_errors(df, empty & ~bad, "missing_value", lambda _i, col=col: f"empty {col}")
        bad |= empty
    ids = df["dist_id"].where(df["dist_id"].notna() & (df["dist_id"] != ""))
    dup = ids.notna() & ids.duplicated(keep=False)
    if dup.any():
        listing = "; ".join(
            f"{d!r} on rows {', '.join(str(i + 2) for i in idx)}"
            for d, idx in df.index[dup].groupby(ids[dup]).items()
        )
        raise ManifestError(
            f"{shown}: duplicate dist_id (each distorted image needs a unique id): {listing[:2000]}"
        )
    base = storage.parent(uri)
    good = df[~bad].copy()
    for col in ("ref_uri", "dist_uri"):
        good[col] = [storage.resolve(u, base) for u in good[col]]
    # one reference id must name one reference image
    conflicting = good.groupby("ref_id")["ref_uri"].nunique()
    for ref_id in conflicting.index[conflicting > 1]:
        rows = good.index[good["ref_id"] == ref_id]
        for i in rows:
            errors.append(
                _error(
                    ref_id,
                    good.at[i, "dist_id"],
                    good.at[i, "ref_uri"],
                    "conflicting_ref",
                    f"manifest row {i + 2}: ref_id {ref_id!r} is given several different ref_uri values",
                )
            )
        good = good.drop(rows)
    ordered = [*MANIFEST_COLUMNS, *[c for c in good.columns if c not in MANIFEST_COLUMNS]]
    return Manifest(uri=uri, rows=good[ordered].reset_index(drop=True), errors=errors)


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
    out = []
    extras = manifest.extra_columns
    for ref_id, rows in manifest.rows.groupby("ref_id", sort=False):
        dists = []
        for r in rows.itertuples(index=False):
            d = r._asdict()
            dists.append(
                DistortedImage(
                    dist_id=d["dist_id"],
                    dist_uri=d["dist_uri"],
                    codec=d["codec"],
                    codec_version=d["codec_version"],
                    setting=d["setting"],
                    bytes=None if pd.isna(d["bytes"]) else int(d["bytes"]),
                    extras={k: plain(d[k]) for k in extras},
                )
            )
        out.append(ReferenceGroup(ref_id=str(ref_id), ref_uri=rows["ref_uri"].iloc[0], dists=dists))
    return out


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
