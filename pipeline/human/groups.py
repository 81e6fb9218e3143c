"""The scoring groups of a table of human votes: score only the pairs people compared.

:func:`vote_groups` turns the votes (one row per original and unordered pair, ``original, ref_uri, a_uri, b_uri``)
into :class:`pipeline.io.records.ReferenceGroup` records carrying explicit ``pairs``, for
:func:`pipeline.scoring.driver.run_groups`. With a manifest's groups (e.g. a study import's ``manifest.parquet``)
each image keeps its manifest row (codec, setting, bytes, carried columns such as ``method``); without one, an image
is named by its URI and its codec is unknown, as in `clic`. A vote whose images the manifest does not list is left
out and counted.
"""

from __future__ import annotations

import pandas as pd

from pipeline.io import storage
from pipeline.io.records import DistortedImage, ReferenceGroup, group_key

UNKNOWN_CODEC = "unknown"


def vote_groups(
    votes: pd.DataFrame, manifest_groups: list[ReferenceGroup] | None = None
) -> tuple[list[ReferenceGroup], int]:
    """One group per reference with the pairs of ``votes`` to score, and the number of votes left out."""
    if manifest_groups is not None:
        return _from_manifest(votes, manifest_groups)
    out = []
    for ref_uri, rows in votes.groupby("ref_uri", sort=False):
        uris = list(dict.fromkeys([*rows["a_uri"], *rows["b_uri"]]))
        dists = [DistortedImage(dist_id=u, dist_uri=u, codec=UNKNOWN_CODEC) for u in uris]
        pairs = _distinct(zip(rows["a_uri"], rows["b_uri"], strict=True))
        ref_id = str(rows["original"].iloc[0])
        out.append(
            ReferenceGroup(
                ref_id=ref_id, ref_uri=str(ref_uri), dists=dists, pairs=pairs, key=group_key(ref_id)
            )
        )
    return out, 0


def _distinct(pairs) -> list[list[str]]:
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in pairs:
        key = frozenset((a, b))
        if a != b and key not in seen:
            seen.add(key)
            out.append([a, b])
    return out


def _from_manifest(votes: pd.DataFrame, groups: list[ReferenceGroup]) -> tuple[list[ReferenceGroup], int]:
    where: dict[str, tuple[int, str]] = {}
    for k, g in enumerate(groups):
        for d in g.dists:
            where.setdefault(storage.canonical(d.dist_uri), (k, d.dist_id))
    wanted: dict[int, list[tuple[str, str]]] = {}
    missing = 0
    for a, b in zip(votes["a_uri"], votes["b_uri"], strict=True):
        ia, ib = where.get(a), where.get(b)
        if ia is None or ib is None or ia[0] != ib[0]:
            missing += 1
            continue
        wanted.setdefault(ia[0], []).append((ia[1], ib[1]))
    out = []
    for k, pairs in wanted.items():
        g = groups[k]
        ids = {i for p in pairs for i in p}
        out.append(
            ReferenceGroup(
                ref_id=g.ref_id,
                ref_uri=g.ref_uri,
                dists=[d for d in g.dists if d.dist_id in ids],
                pairs=_distinct(pairs),
                key=g.key,
            )
        )
    return out, missing


__all__ = ["UNKNOWN_CODEC", "vote_groups"]
