"""Are the regenerated images the ones the raters saw? A verdict per study method, with the reason.

Two checks, the stronger first:

* **Per file.** Where the study (or an earlier bit-exact regeneration, mucped23's ``reproduced_bytes.csv``) gives
  each file's size and sha256, every regenerated file of the method must have the same sha256 (or, when only the
  size is given, the same byte count). One differing or missing file refuses the method.
* **Mean bpp.** Otherwise the method's mean bpp over the regenerated files is compared with the study's, and the
  method is kept when the relative difference is within ``tolerance`` (default 0.5 %).

The subset correction. A study's per-method mean bpp covers all of its originals; a development part holds only
some of them (mucped23: 33 of 49), and images differ in how many bits they need, so even a bit-exact regeneration
does not land on the study's mean. For mucped23 the ratio of the 33-image mean to the 49-image mean, measured on
the 15 bit-exact methods (libjpeg-turbo and mozjpeg), is ``r(bpp) = 0.9368 - 0.0075 ln(bpp)`` with ``bpp`` the
study's mean (residual standard deviation 0.19 %; the raw ratio is 0.925–0.938, i.e. 6–7.5 % below the study's
means). The expected mean of a method on the subset is ``study_bpp · r(study_bpp)``; :data:`MUCPED23_SUBSET` holds
the two constants, and ``correction=None`` compares with the study's means as they are (a full regeneration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

OK = "ok"
REFUSED = "refused"
DEFAULT_TOLERANCE = 0.005
VERDICT_COLUMNS = [
    "method",
    "verdict",
    "reason",
    "check",
    "n_files",
    "mean_bpp",
    "expected_bpp",
    "relative_error",
    "n_checked",
    "n_mismatched",
]


@dataclass(frozen=True)
class SubsetCorrection:
    """Expected ratio of a subset's mean bpp to the whole study's: ``intercept + slope · ln(study_bpp)``."""

    intercept: float
    slope: float
    note: str = ""

    def ratio(self, study_bpp: float) -> float:
        return self.intercept + self.slope * math.log(study_bpp)

    def expected(self, study_bpp: float) -> float:
        return study_bpp * self.ratio(study_bpp)


MUCPED23_SUBSET = SubsetCorrection(
    0.9368,
    -0.0075,
    "mucped23 development part: 33 of the 49 originals; fitted on the 15 bit-exact methods, residual sd 0.19%",
)


def check_methods(
    regenerated: pd.DataFrame,
    study_bpp: Mapping[str, float],
    *,
    reference_files: pd.DataFrame | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    correction: SubsetCorrection | None = MUCPED23_SUBSET,
    reasons: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One verdict per method of ``study_bpp`` (:data:`VERDICT_COLUMNS`), in its order.

    ``regenerated``: one row per regenerated file, ``method, original, bpp`` and optionally ``bytes`` and
    ``sha256``. ``reference_files``: ``method, original, bytes`` and optionally ``sha256``, the files to match
    exactly where known. ``reasons``: method -> why it was not regenerated (e.g. no encoder), used when it has no
    files. ``tolerance``: the largest relative difference of mean bpp kept.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    for col in ("method", "original", "bpp"):
        if col not in regenerated.columns:
            raise ValueError(f"regenerated files: missing column {col}")
    reasons = reasons or {}
    ref = (
        reference_files
        if reference_files is not None
        else pd.DataFrame(columns=["method", "original", "bytes"])
    )
    rows = []
    for method, target in study_bpp.items():
        files = regenerated[regenerated["method"] == method]
        row = dict.fromkeys(VERDICT_COLUMNS, None) | {"method": method, "n_files": len(files)}
        row.update(n_checked=0, n_mismatched=0)
        expected = correction.expected(target) if correction is not None else float(target)
        row["expected_bpp"] = expected
        if files.empty:
            rows.append(
                row | {"verdict": REFUSED, "check": "none", "reason": reasons.get(method, "no files")}
            )
            continue
        mean = float(files["bpp"].mean())
        row.update(mean_bpp=mean, relative_error=mean / expected - 1.0)
        known = ref[ref["method"] == method]
        if not known.empty:
            row.update(_file_check(files, known))
        elif not math.isfinite(mean):
            row.update(verdict=REFUSED, check="mean bpp", reason="mean bpp is not a number")
        elif abs(mean / expected - 1.0) <= tolerance:
            row.update(verdict=OK, check="mean bpp", reason=_bpp_text(mean, expected, tolerance, correction))
        else:
            row.update(
                verdict=REFUSED, check="mean bpp", reason=_bpp_text(mean, expected, tolerance, correction)
            )
        rows.append(row)
    out = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    out.attrs.update({"tolerance": tolerance, "correction": None if correction is None else correction.note})
    return out


def _bpp_text(mean: float, expected: float, tolerance: float, correction: SubsetCorrection | None) -> str:
    rel = 100.0 * (mean / expected - 1.0)
    what = "the subset-corrected study mean" if correction is not None else "the study mean"
    side = "within" if abs(rel) <= 100.0 * tolerance else "outside"
    return f"mean bpp {mean:.4f} vs {what} {expected:.4f}: {rel:+.2f}% ({side} ±{100.0 * tolerance:g}%)"


def _file_check(files: pd.DataFrame, known: pd.DataFrame) -> dict:
    use_sha = "sha256" in known.columns and "sha256" in files.columns and known["sha256"].notna().all()
    key = "sha256" if use_sha else "bytes"
    if key not in files.columns:
        return {"verdict": REFUSED, "check": key, "reason": f"the regenerated files have no {key} to compare"}
    ours = dict(zip(files["original"].astype(str), files[key], strict=True))
    theirs = dict(zip(known["original"].astype(str), known[key], strict=True))
    missing = sorted(set(theirs) - set(ours))
    differ = sorted(o for o in theirs if o in ours and str(ours[o]) != str(theirs[o]))
    n_checked = len(theirs) - len(missing)
    result = {"check": key, "n_checked": n_checked, "n_mismatched": len(differ)}
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        return result | {"verdict": REFUSED, "reason": f"{len(missing)} file(s) not regenerated ({shown})"}
    if differ:
        shown = ", ".join(differ[:3]) + (" ..." if len(differ) > 3 else "")
        return result | {
            "verdict": REFUSED,
            "reason": f"{len(differ)} of {n_checked} file(s) differ in {key} ({shown})",
        }
    return result | {"verdict": OK, "reason": f"all {n_checked} file(s) equal in {key}"}


def kept(verdicts: pd.DataFrame) -> list[str]:
    """The methods whose verdict is ok."""
    return verdicts.loc[verdicts["verdict"] == OK, "method"].tolist()


def leave_out(pairs: pd.DataFrame, verdicts: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The pair rows whose two methods are both kept, and the counts of what was left out.

    Counts: ``pairs`` (rows) and ``answers`` (their ``n_a + n_b``) left out, and ``methods`` refused.
    """
    ok = set(kept(verdicts))
    keep = pairs["a"].isin(ok) & pairs["b"].isin(ok)
    n = pairs["n_a"] + pairs["n_b"]
    counts = {
        "pairs": int((~keep).sum()),
        "answers": int(n[~keep].sum()),
        "methods": int((verdicts["verdict"] != OK).sum()),
    }
    return pairs[keep].reset_index(drop=True), counts


def bpp_of(n_bytes: np.ndarray | pd.Series, width: int, height: int) -> np.ndarray:
    """Bits per pixel of files of ``n_bytes`` for a ``width`` × ``height`` image."""
    return np.asarray(n_bytes, dtype=np.float64) * 8.0 / (width * height)


__all__ = [
    "DEFAULT_TOLERANCE",
    "MUCPED23_SUBSET",
    "OK",
    "REFUSED",
    "VERDICT_COLUMNS",
    "SubsetCorrection",
    "bpp_of",
    "check_methods",
    "kept",
    "leave_out",
]
