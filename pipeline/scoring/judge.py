"""Which judge decides a pair: PRFNet's pairwise preferences (the default) or a full-reference metric's.

For a metric, each scored pair's ``p_a`` becomes the metric's preference within the pair's reference group: 1 when
A's value is better than B's by the metric's direction, 0 when worse, 0.5 when equal; the leaderboards are then the
same Bradley–Terry machinery on those outcomes. A pair whose images lack the metric's value is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRFNET = "prfnet"


def judge_pairs(images: pd.DataFrame, pairs: pd.DataFrame, judge: str) -> pd.DataFrame:
    """``pairs`` with ``p_a`` from ``judge`` (``prfnet``: unchanged). Raises ValueError for an unknown judge or a
    metric the images do not carry."""
    if judge == PRFNET:
        return pairs
    from pipeline.image import metrics

    known = {m.name: m for m in metrics.available_metrics()}
    if judge not in known:
        raise ValueError(f"--judge must be prfnet or a metric ({', '.join(sorted(known))}), got {judge!r}")
    if judge not in images.columns or images[judge].isna().all():
        raise ValueError(f"--judge {judge}: the images have no {judge} values (score with --metrics {judge})")
    if pairs.empty:
        return pairs
    value = images.drop_duplicates(["ref_id", "dist_id"]).set_index(["ref_id", "dist_id"])[judge]
    va = pd.to_numeric(value.reindex(list(zip(pairs["ref_id"], pairs["a_id"], strict=True))), errors="coerce")
    vb = pd.to_numeric(value.reindex(list(zip(pairs["ref_id"], pairs["b_id"], strict=True))), errors="coerce")
    sa, sb = va.to_numpy(np.float64), vb.to_numpy(np.float64)
    if not known[judge].higher_is_better:
        sa, sb = -sa, -sb
    with np.errstate(invalid="ignore"):
        p = np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5))
    ok = ~(np.isnan(sa) | np.isnan(sb))
    return pairs.assign(p_a=p)[ok].reset_index(drop=True)


__all__ = ["PRFNET", "judge_pairs"]
