"""Leaderboards from results tables: what is compared, recovery of known strengths, intervals, labels.

The statistics themselves (agreement with choix, coverage) are tested in tests/pipeline/stats; here the question
is whether the report feeds them the right comparisons and passes their answers on unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from pipeline.report import buckets as buckets_mod
from pipeline.report import leaderboard as lb
from pipeline.stats import bradley_terry

OPTIONS = lb.BoardOptions(n_boot=200, seed=1)


def _boards(synth, spec="quantiles:2", options=OPTIONS):
    buckets = buckets_mod.parse(spec, synth.images["bpp"])
    images, pairs = lb.comparisons(synth.images, synth.pairs, buckets, options.by)
    return buckets, images, pairs, lb.boards(images, pairs, buckets, options)


def test_recovers_the_order_of_known_strengths_in_every_bucket(synthetic):
    _, _, _, boards = _boards(synthetic)
    truth = synthetic.strengths
    assert [b.name for b in boards] == ["all", "q1", "q2"]
    for b in boards:
        t = b.table
        assert list(t["item"]) == sorted(truth, key=truth.get, reverse=True)
        rho = spearmanr(t["score"], [truth[i] for i in t["item"]]).statistic
        assert rho == pytest.approx(1.0)
        assert (t["ci_low"] <= t["score"]).all() and (t["score"] <= t["ci_high"]).all()
        # strengths 0.4 apart with 20 references: every interval separates, ranks are 1..4
        assert list(t["rank"]) == [1, 2, 3, 4]
        assert (t["n_refs"] == 20).all()
        m = b.win_matrix.to_numpy()
        off_diagonal = ~np.eye(len(m), dtype=bool)
        np.testing.assert_allclose((m + m.T)[off_diagonal], 1.0)
        assert np.isnan(np.diag(m)).all()
        assert list(b.win_matrix.index) == list(t["item"])


def test_only_pairs_within_one_bucket_and_of_different_items_are_compared(synthetic):
    buckets, images, _, boards = _boards(synthetic)
    # independent count: bucket each image by its own bpp, then keep pairs whose two images share one
    bucket_of = dict(zip(images["dist_id"], buckets_mod.assign(images["bpp"], buckets), strict=True))
    p = synthetic.pairs
    a_bucket, b_bucket = p["a_id"].map(bucket_of), p["b_id"].map(bucket_of)
    same_bucket = (a_bucket == b_bucket) & (a_bucket >= 0)
    different = p["a_codec"] != p["b_codec"]
    assert boards[0].n_pairs == int((same_bucket & different).sum())
    for k, b in enumerate(boards[1:]):
        mine = same_bucket & (a_bucket == k)
        assert b.n_pairs == int((mine & different).sum())
        assert b.n_same_item_pairs == int((mine & ~different).sum())
        assert b.table["n_comparisons"].sum() == 2 * b.n_pairs
    assert sum(b.n_pairs for b in boards[1:]) == boards[0].n_pairs


def test_intervals_are_the_reference_image_bootstrap_of_those_comparisons(synthetic):
    _, _, pairs, boards = _boards(synthetic)
    used = pairs[(pairs["bucket"] == 0) & (pairs["a_codec"] != pairs["b_codec"])]
    direct = bradley_terry.bootstrap(
        used.assign(a=used["a_codec"], b=used["b_codec"]),
        a_col="a",
        b_col="b",
        p_col="p_a",
        cluster_col="ref_id",
        n_boot=OPTIONS.n_boot,
        seed=OPTIONS.seed,
    )
    ours = boards[1].table
    pd.testing.assert_series_equal(ours["item"], direct["item"])
    for col in ("score", "ci_low", "ci_high", "se", "win_rate"):
        np.testing.assert_allclose(ours[col], direct[col], rtol=0, atol=0)
    assert list(ours["rank"]) == list(direct["rank"])


def test_one_reference_image_gives_no_interval_and_one_shared_rank(make):
    synth = make({"a": 0.0, "b": 1.0, "c": 2.0}, n_refs=1)
    _, _, _, boards = _boards(synth, spec="quantiles:1")
    t = boards[1].table
    assert t["ci_low"].isna().all() and t["ci_high"].isna().all()
    assert (t["rank"] == 1).all()
    assert list(t["item"]) == ["c", "b", "a"]  # point estimates are still reported, best first
    assert any("single reference image" in n for n in boards[1].notes)


def test_few_reference_images_are_flagged(make):
    synth = make({"a": 0.0, "b": 1.0}, n_refs=3)
    _, _, _, boards = _boards(synth, spec="quantiles:1")
    assert any("only 3 reference images" in n for n in boards[1].notes)


def test_by_setting_ranks_each_codec_setting(synthetic):
    _, _, _, boards = _boards(synthetic, spec="quantiles:1", options=lb.BoardOptions(by="setting", n_boot=50))
    items = set(boards[0].table["item"])
    assert items == {f"{c} q={k}" for c in synthetic.strengths for k in range(4)}
    assert boards[0].n_same_item_pairs == 0  # settings of one codec are different items now


def test_codecs_in_several_versions_are_labelled_by_version(make):
    synth = make({"jpeg": 0.0, "webp": 1.0}, n_refs=4, versions={"jpeg": ["8d", "9e"]})
    _, _, _, boards = _boards(synth, spec="quantiles:1", options=lb.BoardOptions(n_boot=50))
    assert set(boards[0].table["item"]) == {"jpeg 8d", "jpeg 9e", "webp"}


def test_a_bucket_without_pairs_of_different_codecs_says_so(make):
    # codec b sits at 8x the rate of codec a: with two buckets the codecs never meet
    synth = make({"a": 0.0, "b": 1.0}, n_refs=4, n_settings=2, rate_factor={"b": 16.0})
    _, _, _, boards = _boards(synth, spec="0,0.2,10")
    assert boards[1].table.empty and boards[1].n_pairs == 0
    assert any("nothing to rank" in n for n in boards[1].notes)
    assert any("not compared with any other item here: a" in n for n in boards[1].notes)
