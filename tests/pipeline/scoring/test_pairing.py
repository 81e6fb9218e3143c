"""Pairing strategies: exact pair sets on small constructed groups."""

import pytest

from pipeline.scoring.pairing import Item, pairs


def items(spec):
    return [Item(codec=c, bpp=b) for c, b in spec]


def test_all_is_every_unordered_pair_once():
    got = pairs(items([("jpeg", 0.1)] * 5), "all")
    assert len(got) == 10 == len(set(got))
    assert all(i < j for i, j in got)


def test_adjacent_neighbours_within_codec_and_nearest_across():
    group = items([("jpeg", 0.5), ("jpeg", 0.1), ("jpeg", 0.3), ("webp", 0.32), ("webp", 0.9)])
    got = set(pairs(group, "adjacent"))
    # within jpeg by bpp: 0.1-0.3 (1,2) and 0.3-0.5 (2,0); within webp: (3,4)
    assert {(1, 2), (0, 2), (3, 4)} <= got
    # across: jpeg 0.5 -> webp 0.32 (0,3); jpeg 0.1 -> webp 0.32 (1,3); jpeg 0.3 -> (2,3); webp 0.9 -> jpeg 0.5
    assert {(0, 3), (1, 3), (2, 3), (0, 4)} <= got
    assert got == {(1, 2), (0, 2), (3, 4), (0, 3), (1, 3), (2, 3), (0, 4)}


def test_matched_uses_relative_tolerance():
    group = items([("jpeg", 1.0), ("webp", 0.9), ("avif", 0.8), ("jxl", None)])
    assert pairs(group, "matched") == [(0, 1), (1, 2)]  # 0.8 vs 1.0 differ by 20%
    assert pairs(group, "matched", tolerance=0.25) == [(0, 1), (0, 2), (1, 2)]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="adjacent"):
        pairs([], "some")


def test_pairs_by_id_keep_orientation_and_skip_missing():
    from pipeline.scoring.pairing import pairs_by_id

    ids = ["b1", "c1", "b2", "c2"]
    assert pairs_by_id(ids, [["b1", "c1"], ["c2", "b2"], ["b3", "c3"], ["b1", "b1"]]) == [(0, 1), (3, 2)]
