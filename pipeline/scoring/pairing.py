"""Pairing strategies (``--pairs``): which distorted images of one reference are compared.

Each unordered pair appears once, oriented by manifest order: A is the image listed first. The other order is
``1 - p_a`` and is never scored separately.

- ``all``: every unordered pair (N(N-1)/2).
- ``adjacent``: within a codec, neighbouring images by bpp; across codecs, each image with the nearest-bpp image of
  every other codec. Without rates (no ``bytes``), manifest order stands in for bpp within a codec and cross-codec
  pairs are not formed.
- ``matched``: pairs whose bpp differ by at most ``tolerance`` (relative to the larger, default 15%).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

STRATEGIES = ("all", "adjacent", "matched")
DEFAULT_MATCH_TOLERANCE = 0.15


@dataclass(frozen=True)
class Item:
    """What pairing needs of a distorted image."""

    codec: str
    bpp: float | None


def _known(bpp: float | None) -> bool:
    return bpp is not None and math.isfinite(bpp)


def pairs(
    items: Sequence[Item], strategy: str, *, tolerance: float = DEFAULT_MATCH_TOLERANCE
) -> list[tuple[int, int]]:
    """Index pairs (i, j) with i < j in manifest order, sorted, without duplicates."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pairing strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    n = len(items)
    chosen: set[tuple[int, int]] = set()

    def add(i: int, j: int) -> None:
        if i != j:
            chosen.add((min(i, j), max(i, j)))

    if strategy == "all":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    if strategy == "matched":
        for i in range(n):
            for j in range(i + 1, n):
                a, b = items[i].bpp, items[j].bpp
                if _known(a) and _known(b) and abs(a - b) <= tolerance * max(a, b):
                    add(i, j)
        return sorted(chosen)
    # adjacent
    by_codec: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_codec.setdefault(it.codec, []).append(i)
    for members in by_codec.values():
        ordered = sorted(members, key=lambda k: (items[k].bpp if _known(items[k].bpp) else math.inf, k))
        if not all(_known(items[k].bpp) for k in members):
            ordered = members
        for x, y in itertools.pairwise(ordered):
            add(x, y)
    for i, it in enumerate(items):
        if not _known(it.bpp):
            continue
        for codec, members in by_codec.items():
            if codec == it.codec:
                continue
            rated = [k for k in members if _known(items[k].bpp)]
            if rated:
                nearest = min(rated, key=lambda k: (abs(items[k].bpp - it.bpp), k))
                add(i, nearest)
    return sorted(chosen)


def pairs_by_id(ids: Sequence[str], wanted: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """Explicit pairs given by id, as index pairs into ``ids``, orientation kept (A first).

    Pairs naming an id that is not in ``ids`` (an image that failed to load) are left out; the other rows go on.
    """
    index = {d: i for i, d in enumerate(ids)}
    out = []
    for a, b in wanted:
        if a in index and b in index and a != b:
            out.append((index[a], index[b]))
    return out
