"""The CLIC perceptual track (CLIC 2021): triplet CSVs, scoring groups, the 0/1 submission and its accuracy.

The format (no header): ``OriginalFile,FileA,FileB`` per row; an oracle or a submission adds a fourth column ``T``,
0 when A is closer to the original than B, 1 otherwise. File names are relative to an images folder.

Everything here is pure (pandas, no Ray, no model): :mod:`jobs.clic` reads the CSV, builds the scoring groups,
hands them to :func:`pipeline.scoring.driver.score_groups` and turns the scored pairs back into a submission.

Decisions, stated once:

* Each original is one scoring group; its distorted images are the distinct ``FileA``/``FileB`` of its rows, each
  decoded and encoded once however many rows it is in. Each unordered pair is scored once, in the orientation of
  its first row; a row naming the same two images the other way round gets ``1 - p_a``.
* ``T = 1`` when ``p_a < 0.5``, else ``T = 0``: an exact tie (``p_a == 0.5``, e.g. two identical images) goes to
  A, as in the CLIC devkit's PSNR baseline (``1 if psnr_a < psnr_b else 0``).
* Accuracy is ``matches / rows`` over the oracle's rows: every row counts, duplicated and conflicting triplets
  included, so no predictor reaches 100% on the 2021 validation oracle. The devkit's ``eval_csv.py`` reads both
  files into a dictionary keyed by the triplet instead (one vote per distinct triplet, the last row's label
  wins); that figure is reported beside it as ``accuracy_distinct``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.io import storage, tables
from pipeline.scoring.manifest import group_key

COLUMNS = ("original", "file_a", "file_b")
LABEL = "t"
HEADER_NAMES = ("originalfile", "original", "original_file")
# buckets of "rows per original" for the accuracy breakdown: [low, high]
COUNT_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 50), (51, None))
UNKNOWN_CODEC = "unknown"


class ClicFormatError(ValueError):
    """A CLIC CSV that cannot be used: wrong number of columns, empty names, a label that is not 0 or 1."""


# --------------------------------------------------------------------------------------------- reading


def parse_csv(text: str, *, name: str = "CSV", labelled: bool | None = None) -> pd.DataFrame:
    """Rows of a CLIC CSV in file order: ``original, file_a, file_b`` and, when labelled, ``t`` (int 0/1).

    ``labelled=None`` accepts 3 or 4 columns (all rows alike); ``True``/``False`` require 4 / 3. A header row
    (``OriginalFile,FileA,FileB[,T]``) is skipped when present. Blank lines are ignored.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not rows and cells[0].lower() in HEADER_NAMES:
            continue
        rows.append(cells)
        lines.append(lineno)
    if not rows:
        raise ClicFormatError(f"{name}: no triplet rows")
    width = len(rows[0])
    expected = {None: (3, 4), True: (4,), False: (3,)}[labelled]
    for cells, lineno in zip(rows, lines, strict=True):
        if len(cells) != width or len(cells) not in expected:
            want = " or ".join(str(n) for n in expected)
            raise ClicFormatError(
                f"{name} line {lineno}: {len(cells)} columns, expected {want} "
                "(OriginalFile,FileA,FileB[,T]) on every row"
            )
        if not all(cells[:3]):
            raise ClicFormatError(f"{name} line {lineno}: an empty file name")
        if width == 4 and cells[3] not in ("0", "1"):
            raise ClicFormatError(
                f"{name} line {lineno}: T must be 0 (A closer) or 1 (B closer), got {cells[3]!r}"
            )
    df = pd.DataFrame([r[:3] for r in rows], columns=list(COLUMNS))
    if width == 4:
        df[LABEL] = np.array([int(r[3]) for r in rows], dtype=np.int64)
    df.attrs["lines"] = lines
    return df


def read_csv(uri: str, *, labelled: bool | None = None) -> pd.DataFrame:
    """:func:`parse_csv` of a CSV at any URI; a missing or unreadable file raises :class:`ClicFormatError`."""
    shown = storage.display(uri)
    data = tables.read_input(uri, error=ClicFormatError, allow_empty=True)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ClicFormatError(f"{shown}: not UTF-8 text") from None
    return parse_csv(text, name=shown, labelled=labelled)


# --------------------------------------------------------------------------------------------- scoring groups


def _oriented_pairs(rows: pd.DataFrame) -> list[list[str]]:
    """The distinct unordered pairs of one original's rows, each in the orientation of its first row."""
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in zip(rows["file_a"], rows["file_b"], strict=True):
        key = frozenset((a, b))
        if a != b and key not in seen:
            seen.add(key)
            out.append([a, b])
    return out


def build_groups(triplets: pd.DataFrame, images: str, originals: str | None = None) -> list[dict]:
    """One :func:`pipeline.scoring.driver.score_groups` record per original, in first-appearance order.

    ``images`` is the folder of the distorted files, ``originals`` that of the originals (default: ``images``).
    A row whose A and B are the same file needs no model (its ``p_a`` is 0.5 by antisymmetry) and adds no pair.
    """
    originals = originals or images
    out = []
    for original, rows in triplets.groupby("original", sort=False):
        names = list(dict.fromkeys([*rows["file_a"], *rows["file_b"]]))
        out.append(
            {
                "ref_id": str(original),
                "ref_uri": storage.join(originals, str(original)),
                "key": group_key(str(original)),
                "dists": [
                    {
                        "dist_id": n,
                        "dist_uri": storage.join(images, n),
                        "codec": UNKNOWN_CODEC,
                        "codec_version": None,
                        "setting": None,
                        "bytes": None,
                        "extras": {},
                    }
                    for n in names
                ],
                "pairs": _oriented_pairs(rows),
            }
        )
    return out


def row_probabilities(triplets: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """P(A closer) for every row from the scored ``pairs`` table (``ref_id, a_id, b_id, p_a``).

    A row scored the other way round gets ``1 - p_a``; a row with A == B gets 0.5; a row whose pair was not
    scored (an image failed to load) gets NaN.
    """
    lookup: dict[tuple[str, str, str], float] = {}
    for ref, a, b, p in zip(pairs["ref_id"], pairs["a_id"], pairs["b_id"], pairs["p_a"], strict=True):
        lookup[(ref, a, b)] = float(p)
        lookup.setdefault((ref, b, a), 1.0 - float(p))
    out = np.full(len(triplets), np.nan)
    for i, (o, a, b) in enumerate(
        zip(triplets["original"], triplets["file_a"], triplets["file_b"], strict=True)
    ):
        out[i] = 0.5 if a == b else lookup.get((o, a, b), np.nan)
    return out


def decide(p_a: np.ndarray) -> np.ndarray:
    """CLIC's 0/1 from P(A closer): 0 when A is closer (ties at exactly 0.5 go to A), 1 otherwise; NaN -> 0."""
    p = np.asarray(p_a, dtype=np.float64)
    return np.where(np.isnan(p) | (p >= 0.5), 0, 1).astype(np.int64)


def submission_text(triplets: pd.DataFrame, t: np.ndarray) -> str:
    """The 4-column submission (no header), rows in the input's order, names exactly as given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for (o, a, b), v in zip(triplets[list(COLUMNS)].itertuples(index=False), t, strict=True):
        writer.writerow([o, a, b, int(v)])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- accuracy


@dataclass
class ClicScore:
    """Accuracy of a submission against an oracle, with the breakdowns `prfeval clic` prints."""

    rows: int
    matches: int
    accuracy: float  # matches / oracle rows: every row counts
    distinct_triplets: int
    accuracy_distinct: (
        float  # eval_csv.py's dictionary semantics: one vote per distinct triplet, last label wins
    )
    duplicated_triplets: int  # distinct triplets that appear on more than one oracle row
    conflicting_triplets: int  # ... whose rows disagree (either orientation)
    ceiling: float  # the best accuracy a predictor consistent across orientations can reach on these rows
    confusion: dict[str, int]  # "oracle0_pred0", "oracle0_pred1", "oracle1_pred0", "oracle1_pred1"
    by_count: list[dict] = field(default_factory=list)  # per bucket of rows-per-original
    per_original: pd.DataFrame | None = None  # original, rows, matches, accuracy

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "per_original"}
        if self.per_original is not None:
            d["per_original"] = self.per_original.to_dict("records")
        return d


def _keys(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(zip(df["original"], df["file_a"], df["file_b"], strict=True))


def _canonical_votes(oracle: pd.DataFrame) -> pd.DataFrame:
    """Per unordered triplet (original, the two names sorted): the number of rows and of rows for the first name."""
    swap = (oracle["file_a"] > oracle["file_b"]).to_numpy()
    a, b = oracle["file_a"].to_numpy(), oracle["file_b"].to_numpy()
    g = pd.DataFrame(
        {
            "o": oracle["original"].to_numpy(),
            "x": np.where(swap, b, a),
            "y": np.where(swap, a, b),
            "t": np.where(swap, 1 - oracle[LABEL].to_numpy(), oracle[LABEL].to_numpy()),
        }
    )
    return g.groupby(["o", "x", "y"])["t"].agg(["sum", "count"])


def _bucket_name(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def accuracy(submission: pd.DataFrame, oracle: pd.DataFrame) -> ClicScore:
    """Score a submission (``original, file_a, file_b, t``) against an oracle of the same form.

    A triplet the submission lists several times is looked up by its last row (as the devkit does). An oracle
    triplet missing from the submission raises :class:`ClicFormatError` (the devkit stops there too).
    """
    predicted = dict(zip(_keys(submission), submission[LABEL].astype(int), strict=True))
    keys = _keys(oracle)
    missing = [k for k in keys if k not in predicted]
    if missing:
        raise ClicFormatError(
            f"{len(missing)} oracle row(s) have no prediction, e.g. {','.join(missing[0])}; "
            "the submission must list every triplet of the oracle"
        )
    truth = oracle[LABEL].to_numpy(dtype=np.int64)
    pred = np.array([predicted[k] for k in keys], dtype=np.int64)
    hit = pred == truth
    last = dict(zip(keys, truth, strict=True))  # eval_csv.py: the last row of a triplet sets its label
    distinct_hits = sum(predicted[k] == v for k, v in last.items())
    counts = pd.Series(keys).value_counts()
    votes = _canonical_votes(oracle)
    frame = pd.DataFrame({"original": oracle["original"].to_numpy(), "hit": hit})
    per_original = frame.groupby("original", sort=False)["hit"].agg(rows="count", matches="sum").reset_index()
    per_original["accuracy"] = per_original["matches"] / per_original["rows"]
    by_count = []
    for low, high in COUNT_BUCKETS:
        n = per_original["rows"]
        sel = (n >= low) & (n <= high) if high is not None else n >= low
        if sel.any():
            rows, matches = (
                int(per_original.loc[sel, "rows"].sum()),
                int(per_original.loc[sel, "matches"].sum()),
            )
            by_count.append(
                {
                    "rows_per_original": _bucket_name(low, high),
                    "originals": int(sel.sum()),
                    "rows": rows,
                    "matches": matches,
                    "accuracy": matches / rows,
                }
            )
    confusion = {
        f"oracle{o}_pred{p}": int(((truth == o) & (pred == p)).sum()) for o in (0, 1) for p in (0, 1)
    }
    return ClicScore(
        rows=len(oracle),
        matches=int(hit.sum()),
        accuracy=float(hit.mean()),
        distinct_triplets=len(last),
        accuracy_distinct=distinct_hits / len(last),
        duplicated_triplets=int((counts > 1).sum()),
        conflicting_triplets=int(((votes["sum"] > 0) & (votes["sum"] < votes["count"])).sum()),
        ceiling=float(np.maximum(votes["sum"], votes["count"] - votes["sum"]).sum() / len(oracle)),
        confusion=confusion,
        by_count=by_count,
        per_original=per_original,
    )


def format_score(score: ClicScore) -> str:
    """The human-readable summary `prfeval clic --oracle` prints."""
    c = score.confusion
    lines = [
        f"accuracy: {score.accuracy:.4f}  ({score.matches} of {score.rows} oracle rows; every row counts)",
        f"accuracy over distinct triplets (devkit eval_csv.py, last label wins): {score.accuracy_distinct:.4f}  "
        f"({score.distinct_triplets} triplets)",
        f"oracle: {score.duplicated_triplets} triplet(s) repeated, {score.conflicting_triplets} with conflicting "
        f"labels; best reachable per-row accuracy {score.ceiling:.4f}",
        "confusion (rows):        predicted A closer (0)   predicted B closer (1)",
        f"  oracle A closer (0)    {c['oracle0_pred0']:>22}   {c['oracle0_pred1']:>22}",
        f"  oracle B closer (1)    {c['oracle1_pred0']:>22}   {c['oracle1_pred1']:>22}",
        "by rows per original:    originals    rows   accuracy",
    ]
    for b in score.by_count:
        lines.append(
            f"  {b['rows_per_original']:<20} {b['originals']:>10} {b['rows']:>7}   {b['accuracy']:.4f}"
        )
    return "\n".join(lines)
