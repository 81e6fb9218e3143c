"""Leaderboards: Bradley–Terry ratings of codecs per bpp bucket from PRFNet's soft pairwise outcomes.

Each pair of the results (two distorted versions A and B of one reference, ``p_a`` = P(A is closer to the
reference)) whose images fall in the same bucket is one comparison of A's item with B's item, with ``p_a`` as a
fractional win. Pairs of one item with itself (two settings of one codec, ``by="codec"``) carry no information on
the ranking and are left out. Ratings, bootstrap intervals (resampling reference images, since pairs sharing a
reference are correlated), ranks and the win-rate matrix come from :mod:`pipeline.stats.bradley_terry`.

With a single reference image in a bucket there is nothing to resample: intervals are left empty (and every rank
is 1) rather than shown with a spurious width of zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.report import items as item_mod
from pipeline.report.buckets import Bucket, assign
from pipeline.stats import bradley_terry

ALL_BUCKETS = "all"
MIN_REFS_FOR_INTERVALS = 2
FEW_REFS = 5

TABLE_COLUMNS = [
    "rank",
    "item",
    "score",
    "ci_low",
    "ci_high",
    "se",
    "win_rate",
    "n_comparisons",
    "n_refs",
    "n_images",
    "mean_bpp",
]


@dataclass(frozen=True)
class BoardOptions:
    """How leaderboards are fitted: items (``by``), bootstrap size, interval level, seed."""

    by: str = "codec"
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0


@dataclass
class Board:
    """One leaderboard: ratings table (best first), win-rate matrix and counts."""

    name: str
    label: str
    low: float | None
    high: float | None
    table: pd.DataFrame
    win_matrix: pd.DataFrame
    n_pairs: int
    n_refs: int
    n_images: int
    n_same_item_pairs: int
    notes: list[str] = field(default_factory=list)


def comparisons(
    images: pd.DataFrame, pairs: pd.DataFrame, buckets: list[Bucket], by: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Images and pairs annotated with their item labels and bucket index (``-1``: outside every bucket).

    Pairs get ``a``, ``b`` (items), ``bucket`` (the bucket of both images, ``-1`` when they differ or either is
    outside) and ``same_item``.
    """
    multi = item_mod.multi_version_codecs(images)
    images = images.assign(
        item=item_mod.item_labels(images, multi, by).to_numpy(),
        bucket=assign(images["bpp"], buckets),
    )
    a_bucket, b_bucket = assign(pairs["a_bpp"], buckets), assign(pairs["b_bpp"], buckets)
    pairs = pairs.assign(
        a=item_mod.item_labels(pairs, multi, by, prefix="a_").to_numpy(),
        b=item_mod.item_labels(pairs, multi, by, prefix="b_").to_numpy(),
        bucket=np.where(a_bucket == b_bucket, a_bucket, -1),
    )
    pairs["same_item"] = pairs["a"] == pairs["b"]
    return images, pairs


def board(
    name: str,
    label: str,
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    options: BoardOptions,
    *,
    low: float | None = None,
    high: float | None = None,
) -> Board:
    """The leaderboard of these images and pairs (already restricted to one bucket; columns from
    :func:`comparisons`)."""
    used = pairs[~pairs["same_item"]]
    notes: list[str] = []
    n_refs = int(used["ref_id"].nunique())
    if used.empty:
        table = pd.DataFrame(columns=TABLE_COLUMNS)
        win = pd.DataFrame()
        notes.append("no pairs of different items in this bucket: nothing to rank")
    else:
        table = bradley_terry.bootstrap(
            used,
            a_col="a",
            b_col="b",
            p_col="p_a",
            cluster_col="ref_id",
            n_boot=options.n_boot,
            alpha=options.alpha,
            seed=options.seed,
        ).rename(columns={"n_clusters": "n_refs"})
        if n_refs < MIN_REFS_FOR_INTERVALS:
            table[["ci_low", "ci_high", "se"]] = np.nan
            table["rank"] = 1
            notes.append(
                "pairs from a single reference image: no bootstrap interval is possible and ranks are not "
                "separated"
            )
        elif n_refs < FEW_REFS:
            notes.append(
                f"only {n_refs} reference images: bootstrap intervals from so few images understate the "
                "uncertainty"
            )
        per_item = images.groupby("item").agg(n_images=("dist_id", "size"), mean_bpp=("bpp", "mean"))
        table = table.join(per_item, on="item")
        table["n_images"] = table["n_images"].fillna(0).astype(np.int64)
        table = table[TABLE_COLUMNS]
        win = bradley_terry.win_matrix(used["a"], used["b"], used["p_a"], items=list(table["item"]))
    unrated = sorted(set(images["item"]) - set(table["item"]))
    if unrated:
        notes.append(f"not compared with any other item here: {', '.join(unrated)}")
    return Board(
        name=name,
        label=label,
        low=low,
        high=high,
        table=table.reset_index(drop=True),
        win_matrix=win,
        n_pairs=len(used),
        n_refs=n_refs,
        n_images=len(images),
        n_same_item_pairs=int(pairs["same_item"].sum()),
        notes=notes,
    )


def boards(
    images: pd.DataFrame, pairs: pd.DataFrame, buckets: list[Bucket], options: BoardOptions
) -> list[Board]:
    """One leaderboard per bucket, preceded by one over all buckets (the union of within-bucket pairs).

    ``images`` and ``pairs`` are labelled by :func:`comparisons` with the same ``buckets`` and ``options.by``.
    """
    inside_images, inside_pairs = images[images["bucket"] >= 0], pairs[pairs["bucket"] >= 0]
    out = [
        board(
            ALL_BUCKETS,
            "all buckets (pairs within one bucket)",
            inside_images,
            inside_pairs,
            options,
            low=buckets[0].low if buckets else None,
            high=buckets[-1].high if buckets else None,
        )
    ]
    for k, bucket in enumerate(buckets):
        out.append(
            board(
                bucket.name,
                bucket.label,
                images[images["bucket"] == k],
                pairs[pairs["bucket"] == k],
                options,
                low=bucket.low,
                high=bucket.high,
            )
        )
    return out
