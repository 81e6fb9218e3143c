"""Train/validation split by reference image, never by triplet.

Triplets of one reference are strongly correlated (same content, often the same distorted images), so a triplet-level
split would measure memorisation. Every ``ref_id`` lands wholly on one side:

* a ``split`` column in the input decides, when present for every row (it must be constant per ``ref_id``);
* otherwise ``holdout`` names the validation references explicitly;
* otherwise the references whose seeded hash ranks lowest form the validation side, ``val_fraction`` of them
  (at least one when there are two or more): the same references whatever the row order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import pandas as pd

from model.registry import did_you_mean


class SplitError(ValueError):
    """A split that cannot be made: unknown held-out references, a reference on both sides, no training data."""


def _rank(ref_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{ref_id}".encode()).hexdigest()


def validation_refs(
    ref_ids: Sequence[str], *, holdout: Sequence[str] | None = None, val_fraction: float = 0.1, seed: int = 0
) -> list[str]:
    """The references of the validation side, sorted."""
    refs = sorted(set(map(str, ref_ids)))
    if holdout:
        unknown = [h for h in holdout if h not in refs]
        if unknown:
            hints = [f"{h!r}" + (f" ({hint})" if (hint := did_you_mean(h, refs)) else "") for h in unknown]
            shown = ", ".join(refs[:10]) + (" ..." if len(refs) > 10 else "")
            raise SplitError(
                f"held-out reference(s) not in the triplets: {', '.join(hints)}; ref_ids: {shown}"
            )
        return sorted(set(holdout))
    if not 0 <= val_fraction < 1:
        raise SplitError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 or len(refs) < 2:
        return []
    n = min(len(refs) - 1, max(1, math.floor(val_fraction * len(refs) + 0.5)))
    return sorted(sorted(refs, key=lambda r: _rank(r, seed))[:n])


def assign(
    df: pd.DataFrame, *, holdout: Sequence[str] | None = None, val_fraction: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """``df`` with its ``split`` column filled (``train``/``val``) by reference; checks that no reference is split."""
    df = df.copy()
    given = df["split"].notna() if "split" in df.columns else pd.Series(False, index=df.index)
    if given.all() and not holdout:
        sides = df.groupby("ref_id")["split"].nunique()
        both = sides.index[sides > 1]
        if len(both):
            raise SplitError(
                f"the split column puts {len(both)} reference(s) on both sides, e.g. {both[0]!r}; "
                "split by reference, never by triplet"
            )
    else:
        val = set(validation_refs(df["ref_id"], holdout=holdout, val_fraction=val_fraction, seed=seed))
        df["split"] = ["val" if r in val else "train" for r in df["ref_id"]]
    if not (df["split"] == "train").any():
        raise SplitError("no training triplets left after the split; hold out fewer references")
    return df
