"""Scoring held-out triplets the way ``prfeval evaluate`` does, with a model in memory.

Validation images go through the evaluate pipeline's own steps: :func:`pipeline.scoring.load.load_group` reads, checks
and tiles each reference with its distorted images on the shared patch grid, and
:meth:`pipeline.scoring.scorer.PairScorer.score` encodes every image once and averages each pair's patch logits. Only the
model comes from memory (the one being trained) instead of a checkpoint file, so a validation number is the number
``evaluate`` would give with that epoch's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from pipeline.io.records import DistortedImage, ReferenceGroup, group_key
from pipeline.scoring.load import load_group
from pipeline.scoring.scorer import PairScorer


def groups(frame: pd.DataFrame) -> list[tuple[ReferenceGroup, list[int]]]:
    """One scoring group per reference image (``ref_uri``) with its distinct distorted images, and its row indices.

    The group's ``pairs`` are the rows' (A, B) in row order.
    """
    out = []
    for ref_uri, rows in frame.groupby("ref_uri", sort=True):
        uris = list(dict.fromkeys([*rows["a_uri"], *rows["b_uri"]]))
        group = ReferenceGroup(
            ref_id=str(rows["ref_id"].iloc[0]),
            ref_uri=ref_uri,
            key=group_key(ref_uri),
            dists=[DistortedImage(dist_id=u, dist_uri=u, codec="unknown") for u in uris],
            pairs=[[a, b] for a, b in zip(rows["a_uri"], rows["b_uri"], strict=True)],
        )
        out.append((group, [int(i) for i in rows.index]))
    return out


def score_group(
    scorer: PairScorer, group: ReferenceGroup, rows: list[int], *, patch: int, min_size: int
) -> np.ndarray:
    """The mean patch logit of each of a group's rows (NaN where an image could not be used; 0 when A is B)."""
    loaded = load_group(group, patch=patch, min_size=min_size)
    index = {d.dist_id: i for i, d in enumerate(loaded.dists)}
    logits = np.full(len(rows), np.nan)
    todo = [
        (k, index[a], index[b]) for k, (a, b) in enumerate(group.pairs or []) if a in index and b in index
    ]
    same = [k for k, i, j in todo if i == j]
    todo = [(k, i, j) for k, i, j in todo if i != j]
    if todo and loaded.dists:
        logits[[k for k, _, _ in todo]] = scorer.score(loaded.patches, [(i, j) for _, i, j in todo])
    logits[same] = 0.0
    return logits


def score_frame(
    model: torch.nn.Module,
    frame: pd.DataFrame,
    *,
    patch: int | None = None,
    batch_size: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, float]:
    """Logits of the rows of ``frame`` (by index) in this shard ``(rank, world)`` of its reference groups."""
    scorer = PairScorer(model, batch_size=batch_size)
    patch = int(patch or scorer.patch_size)
    rank, world = shard
    mine = groups(frame)[rank::world]
    out: dict[int, float] = {}
    was_training = model.training
    model.eval()
    try:
        for n, (group, rows) in enumerate(mine, start=1):
            logits = score_group(scorer, group, rows, patch=patch, min_size=scorer.min_size)
            out.update(zip(rows, map(float, logits), strict=True))
            if progress:
                progress(n, len(mine))
    finally:
        model.train(was_training)
    return out
