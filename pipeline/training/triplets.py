"""2AFC training triplets: read a labelled table or a CLIC CSV into one normalised table.

Inputs (any URI):

* a table (CSV with a header, or Parquet) with ``ref_uri, a_uri, b_uri, label``: ``label`` is P(A closer to the
  reference), hard (0/1) or soft (the fraction of raters who preferred A, as in BAPPS). Optional columns:
  ``ref_id`` (the unit of the train/validation split; default ``ref_uri``), ``family`` (a distortion family for
  per-family accuracy), ``a_bpp``/``b_bpp`` (rates, for accuracy per bpp bucket), ``votes`` (how many answers the label
  summarises), ``weight`` (the triplet's weight in the training loss, a number >= 0, default 1; e.g. the number of
  answers, so a pair judged by twelve raters counts twelve times one judged once) and ``split``
  (``train``/``val``, to impose a split; constant per ``ref_id``). Relative URIs resolve against ``images`` or the table's folder.
* a CLIC perceptual-track CSV (no header: ``OriginalFile,FileA,FileB,T``, ``T = 0`` when A is closer) whose file
  names are relative to ``images`` (default: the CSV's folder). Rows naming the same original and the same two
  images (either way round) become one triplet whose soft label is the fraction of rows preferring A.

The normalised table has :data:`COLUMNS`, in that order, one row per triplet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import clic
from pipeline.io import storage, tables

COLUMNS = [
    "ref_id",
    "ref_uri",
    "a_uri",
    "b_uri",
    "label",
    "family",
    "a_bpp",
    "b_bpp",
    "votes",
    "weight",
    "split",
]
REQUIRED = ("ref_uri", "a_uri", "b_uri", "label")
SPLITS = ("train", "val")
_TEXT_COLUMNS = {"ref_id": pa.string(), "split": pa.string()}  # read as text even when they look like numbers


class TripletError(ValueError):
    """A triplet input that cannot be used for training; the message says which rows and why."""


def _rows_text(idx) -> str:
    listed = ", ".join(str(i + 2) for i in list(idx)[:5])
    return f"row(s) {listed}" + (" ..." if len(idx) > 5 else "")


def _is_table(uri: str, data: bytes) -> bool:
    if tables.is_parquet(uri):
        return True
    first = data.decode("utf-8-sig", errors="replace").lstrip().split("\n", 1)[0]
    return "ref_uri" in [c.strip().strip('"') for c in first.split(",")]


def from_table(df: pd.DataFrame, base: str, *, name: str = "table") -> pd.DataFrame:
    """Validate and normalise a labelled table; relative URIs resolve against ``base``."""
    tables.require_columns(
        df.columns,
        REQUIRED,
        error=TripletError,
        where=name,
        needs=f"; a triplet table needs {', '.join(REQUIRED)}",
    )
    if df.empty:
        raise TripletError(f"{name}: no triplet rows")
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    for col in ("ref_uri", "a_uri", "b_uri"):
        values = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        empty = values.str.strip() == ""
        if empty.any():
            raise TripletError(f"{name}: empty {col} on {_rows_text(df.index[empty])}")
        out[col] = [storage.resolve(v.strip(), base) for v in values]
    label = pd.to_numeric(df["label"], errors="coerce")
    bad = label.isna() | (label < 0) | (label > 1)
    if bad.any():
        raise TripletError(
            f"{name}: label must be a number in [0, 1] (P(A closer)) on {_rows_text(df.index[bad])}, "
            f"e.g. {df['label'][bad].iloc[0]!r}"
        )
    out["label"] = label.astype(np.float64)
    out["ref_id"] = df["ref_id"].astype(str) if "ref_id" in df.columns else out["ref_uri"]
    out["family"] = df["family"].fillna("").astype(str) if "family" in df.columns else ""
    for col in ("a_bpp", "b_bpp"):
        out[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    out["votes"] = pd.to_numeric(df["votes"], errors="coerce").fillna(1) if "votes" in df.columns else 1
    out["weight"] = 1.0
    if "weight" in df.columns:
        weight = pd.to_numeric(df["weight"], errors="coerce")
        bad = weight.isna() | ~np.isfinite(weight) | (weight < 0)
        if bad.any():
            raise TripletError(
                f"{name}: weight must be a finite number >= 0 on {_rows_text(df.index[bad])}, "
                f"e.g. {df['weight'][bad].iloc[0]!r}"
            )
        out["weight"] = weight.astype(np.float64)
    out["split"] = None
    if "split" in df.columns:
        split = df["split"].map(lambda v: None if v is None or pd.isna(v) else str(v).strip().lower())
        wrong = split.notna() & ~split.isin(SPLITS)
        if wrong.any():
            raise TripletError(f"{name}: split must be train or val, on {_rows_text(df.index[wrong])}")
        out["split"] = split
    out["votes"] = out["votes"].astype(np.int64)
    return out[COLUMNS]


def from_clic(rows: pd.DataFrame, images: str, originals: str | None = None) -> pd.DataFrame:
    """CLIC rows (``original, file_a, file_b, t``) -> one triplet per (original, unordered pair), soft labels."""
    originals = originals or images
    out: dict[tuple[str, frozenset[str]], dict] = {}
    for o, a, b, t in zip(rows["original"], rows["file_a"], rows["file_b"], rows[clic.LABEL], strict=True):
        if a == b:
            continue  # nothing to learn: the model answers 0.5 for identical images by construction
        key = (o, frozenset((a, b)))
        rec = out.setdefault(key, {"ref_id": o, "a": a, "b": b, "a_votes": 0, "votes": 0})
        prefers_a = t == 0  # T = 0: the row's A is closer
        rec["a_votes"] += int(prefers_a if a == rec["a"] else not prefers_a)
        rec["votes"] += 1
    return pd.DataFrame(
        [
            {
                "ref_id": r["ref_id"],
                "ref_uri": storage.join(originals, r["ref_id"]),
                "a_uri": storage.join(images, r["a"]),
                "b_uri": storage.join(images, r["b"]),
                "label": r["a_votes"] / r["votes"],
                "family": "",
                "a_bpp": np.nan,
                "b_bpp": np.nan,
                "votes": r["votes"],
                "weight": 1.0,
                "split": None,
            }
            for r in out.values()
        ],
        columns=COLUMNS,
    )


def read_triplets(uri: str, *, images: str | None = None, originals: str | None = None) -> pd.DataFrame:
    """The normalised triplet table of a labelled table or a labelled CLIC CSV at ``uri``."""
    shown = storage.display(uri)
    data = tables.read_input(uri, error=TripletError)
    base = images or storage.parent(uri)
    if _is_table(uri, data):
        table = tables.parse_table(uri, data, error=TripletError, column_types=_TEXT_COLUMNS)
        return from_table(table.to_pandas(), base, name=shown)
    try:
        rows = clic.parse_csv(data.decode("utf-8-sig"), name=shown, labelled=True)
    except UnicodeDecodeError:
        raise TripletError(f"{shown}: not UTF-8 text") from None
    except clic.ClicFormatError as e:
        raise TripletError(
            f"{e} (a triplet table needs a header with ref_uri,a_uri,b_uri,label; a CLIC CSV has four columns "
            "OriginalFile,FileA,FileB,T)"
        ) from None
    return from_clic(rows, base, originals)
