"""A 2AFC study's answers: reading and checking them, the study's methods as prfeval codec settings, and the vote
counts per original and unordered pair.

Input
-----
An answers table (CSV, TSV or Parquet at any URI) with one row per answer: the two methods shown
(``method_a``, ``method_b``), the original, and the answer, ``A`` or ``B``. Column names and what the answer means
are a :class:`StudyFormat`; :data:`MUCPED23` is the mucped23 study's, whose ``answerValue`` names the image the
rater did **not** pick (``B`` means the ``methodA`` image was judged closer), as the study's own Elo notebook counts
wins. A methods table names every method; for mucped23 (``methods.csv``: ``method, family, quality, subsampling,
mean_bpp_all_49_originals``) each family maps to a prfeval codec (:data:`FAMILY_CODECS`), e.g.
``libjpeg-turbo`` q80 4:2:2 to ``jpeg:q=80;subsampling=422;optimize=1`` (ImageMagick turns on Huffman optimisation).

Output
------
:func:`read_answers` returns one row per answer, ``original, method_a, method_b, a_wins`` (1.0 when the rater
judged ``method_a``'s image closer). :func:`aggregate` folds them per original and *unordered* pair, oriented with
the methods in sorted order: ``original, a, b, n_a, n_b, n, label`` with ``label = n_a / n`` the share of answers
for ``a``. Every problem — a missing column, an answer other than A/B, a method the methods table does not know,
an empty cell, the same method on both sides — is a :class:`StudyError` naming the rows (line numbers of the file,
header = line 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.io import storage, tables


class StudyError(ValueError):
    """A study table that cannot be used; the message says which file, which rows and why."""


@dataclass(frozen=True)
class StudyFormat:
    """Column names of an answers table and what its answer names.

    ``answer_names = "chosen"``: ``A`` means the rater picked ``method_a``'s image as closer; ``"rejected"``: ``A``
    names the image the rater did not pick (mucped23).
    """

    method_a: str = "methodA"
    method_b: str = "methodB"
    original: str = "originalName"
    answer: str = "answerValue"
    answer_names: str = "rejected"

    def __post_init__(self) -> None:
        if self.answer_names not in ("chosen", "rejected"):
            raise ValueError(f"answer_names must be 'chosen' or 'rejected', got {self.answer_names!r}")

    @property
    def columns(self) -> tuple[str, str, str, str]:
        return (self.method_a, self.method_b, self.original, self.answer)


MUCPED23 = StudyFormat()

ANSWER_COLUMNS = ["original", "method_a", "method_b", "a_wins"]
PAIR_COLUMNS = ["original", "a", "b", "n_a", "n_b", "n", "label"]
METHOD_COLUMNS = ["method", "family", "quality", "subsampling", "study_bpp", "codec", "spec"]

# study family -> (prfeval codec, options beside quality and subsampling)
FAMILY_CODECS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "libjpeg-turbo": ("jpeg", (("optimize", "1"),)),
    "mozjpeg": ("mozjpeg", ()),
    "jpegli": ("jpegli", ()),
}
SUBSAMPLINGS = ("444", "422", "420")
MUCPED23_BPP_COLUMN = "mean_bpp_all_49_originals"


def _rows_text(mask: pd.Series | np.ndarray) -> str:
    idx = np.flatnonzero(np.asarray(mask))
    listed = ", ".join(str(i + 2) for i in idx[:5])
    return f"line(s) {listed}" + (" ..." if len(idx) > 5 else "") + f" ({len(idx)} row(s))"


def _text(series: pd.Series) -> pd.Series:
    return series.map(
        lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
    )


def _read(uri: str, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    table = tables.read_table(
        uri, error=StudyError, what=what, column_types=dict.fromkeys(columns, pa.string())
    )
    df = table.to_pandas()
    tables.require_columns(df.columns, columns, error=StudyError, where=f"{what} {storage.display(uri)}")
    if df.empty:
        raise StudyError(f"{what} {storage.display(uri)}: no rows")
    return df.reset_index(drop=True)


def method_spec(family: str, quality: int | float | str, subsampling: str | int) -> tuple[str, str]:
    """The prfeval codec and setting spec of a study method, e.g. ``("jpeg", "jpeg:q=80;subsampling=422;optimize=1")``.

    Raises :class:`StudyError` for a family without a codec or a subsampling other than 444, 422, 420.
    """
    if family not in FAMILY_CODECS:
        raise StudyError(f"family {family!r} has no prfeval codec (known: {', '.join(FAMILY_CODECS)})")
    sub = str(subsampling).strip().removeprefix("yuv")
    if sub not in SUBSAMPLINGS:
        raise StudyError(f"subsampling {subsampling!r} is not one of {', '.join(SUBSAMPLINGS)}")
    q = float(quality)
    if not (math.isfinite(q) and q == int(q)):
        raise StudyError(f"quality {quality!r} is not a whole number")
    codec, extra = FAMILY_CODECS[family]
    options = ";".join(f"{k}={v}" for k, v in (("subsampling", sub), *extra))
    return codec, f"{codec}:q={int(q)};{options}"


def read_methods(uri: str, *, bpp_column: str = MUCPED23_BPP_COLUMN) -> pd.DataFrame:
    """The methods table (mucped23's ``methods.csv`` layout) with each method's codec and setting spec.

    Columns: :data:`METHOD_COLUMNS`, one row per method in the file's order; ``study_bpp`` is the study's mean
    bpp of the method (``bpp_column``; for mucped23 over all 49 originals, see :mod:`pipeline.human.reproduce`).
    """
    what = "methods table"
    df = _read(uri, what, ("method", "family", "quality", "subsampling", bpp_column))
    shown = f"{what} {storage.display(uri)}"
    names = _text(df["method"])
    if (names == "").any():
        raise StudyError(f"{shown}: empty method name on {_rows_text(names == '')}")
    dup = names.duplicated(keep=False)
    if dup.any():
        raise StudyError(f"{shown}: method {names[dup].iloc[0]!r} listed more than once ({_rows_text(dup)})")
    quality = pd.to_numeric(df["quality"], errors="coerce")
    bpp = pd.to_numeric(df[bpp_column], errors="coerce")
    bad = quality.isna() | bpp.isna() | ~(bpp > 0)
    if bad.any():
        raise StudyError(f"{shown}: quality and {bpp_column} must be numbers (bpp > 0) on {_rows_text(bad)}")
    rows = []
    for i, name in enumerate(names):
        family, sub = str(df["family"][i]).strip(), str(df["subsampling"][i]).strip()
        try:
            codec, spec = method_spec(family, quality[i], sub)
        except StudyError as e:
            raise StudyError(f"{shown}: method {name!r} (line {i + 2}): {e}") from None
        rows.append((name, family, int(quality[i]), sub, float(bpp[i]), codec, spec))
    return pd.DataFrame(rows, columns=METHOD_COLUMNS)


def read_answers(
    uri: str, *, methods: pd.DataFrame | list[str] | None = None, study: StudyFormat = MUCPED23
) -> pd.DataFrame:
    """The answers at ``uri`` as :data:`ANSWER_COLUMNS`, one row per answer, in file order.

    ``methods``: the known methods (a :func:`read_methods` table or a list of names); a method outside it is an
    error. ``study`` gives the column names and the meaning of the answer.
    """
    what = "answers table"
    df = _read(uri, what, study.columns)
    shown = f"{what} {storage.display(uri)}"
    a, b, original = _text(df[study.method_a]), _text(df[study.method_b]), _text(df[study.original])
    for col, values in ((study.method_a, a), (study.method_b, b), (study.original, original)):
        if (values == "").any():
            raise StudyError(f"{shown}: empty {col} on {_rows_text(values == '')}")
    answer = _text(df[study.answer]).str.upper()
    bad = ~answer.isin(["A", "B"])
    if bad.any():
        raise StudyError(
            f"{shown}: {study.answer} must be A or B on {_rows_text(bad)}, e.g. {df[study.answer][bad].iloc[0]!r}"
        )
    same = a == b
    if same.any():
        raise StudyError(f"{shown}: the same method on both sides on {_rows_text(same)}")
    if methods is not None:
        known = set(methods["method"] if isinstance(methods, pd.DataFrame) else methods)
        unknown = ~a.isin(known) | ~b.isin(known)
        if unknown.any():
            names = sorted((set(a[unknown]) | set(b[unknown])) - known)
            raise StudyError(
                f"{shown}: unknown method(s) {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} "
                f"on {_rows_text(unknown)}; the methods table lists {len(known)}"
            )
    picked_a = answer == ("A" if study.answer_names == "chosen" else "B")
    return pd.DataFrame(
        {"original": original, "method_a": a, "method_b": b, "a_wins": picked_a.astype(np.float64)}
    )[ANSWER_COLUMNS]


def aggregate(answers: pd.DataFrame) -> pd.DataFrame:
    """Vote counts per original and unordered pair (:data:`PAIR_COLUMNS`), ``a < b`` in sorted order.

    ``n_a``/``n_b``: answers for ``a``/``b``; ``n = n_a + n_b``; ``label = n_a / n``. Sorted by original, a, b.
    """
    if answers.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PAIR_COLUMNS})
    ma, mb = answers["method_a"].astype(str), answers["method_b"].astype(str)
    flip = ma > mb
    win_first = np.where(flip, 1.0 - answers["a_wins"], answers["a_wins"])
    df = pd.DataFrame(
        {
            "original": answers["original"].astype(str),
            "a": np.where(flip, mb, ma),
            "b": np.where(flip, ma, mb),
            "win": win_first,
        }
    )
    g = df.groupby(["original", "a", "b"], sort=True)["win"].agg(["sum", "count"]).reset_index()
    out = pd.DataFrame(
        {
            "original": g["original"],
            "a": g["a"],
            "b": g["b"],
            "n_a": g["sum"].round().astype(np.int64),
            "n": g["count"].astype(np.int64),
        }
    )
    out["n_b"] = out["n"] - out["n_a"]
    out["label"] = out["n_a"] / out["n"]
    return out[PAIR_COLUMNS].reset_index(drop=True)


def family_of(method: pd.Series, methods: pd.DataFrame) -> pd.Series:
    """The family of each method name (NaN for a name the methods table does not list)."""
    return method.map(dict(zip(methods["method"], methods["family"], strict=True)))


__all__ = [
    "ANSWER_COLUMNS",
    "FAMILY_CODECS",
    "METHOD_COLUMNS",
    "MUCPED23",
    "PAIR_COLUMNS",
    "StudyError",
    "StudyFormat",
    "aggregate",
    "family_of",
    "method_spec",
    "read_answers",
    "read_methods",
]
