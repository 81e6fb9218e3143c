"""bpp buckets: quantiles put every image in exactly one bucket, CLIC targets tile without gaps, explicit edges."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipeline.report.buckets import CLIC_TARGETS, BucketSpecError, assign, parse


def test_quantiles_cover_every_image_once_in_about_equal_buckets():
    bpp = np.random.default_rng(0).lognormal(-1, 0.8, 301)
    buckets = parse("quantiles:3", bpp)
    assert len(buckets) == 3
    index = assign(bpp, buckets)
    assert (index >= 0).all()
    counts = np.bincount(index)
    assert counts.sum() == 301 and counts.min() >= 99 and counts.max() <= 102
    assert buckets[0].low == bpp.min() and buckets[-1].high == bpp.max() and buckets[-1].closed
    assert all(a.high == b.low for a, b in itertools.pairwise(buckets))


def test_quantiles_with_one_rate_give_one_bucket():
    buckets = parse("quantiles:4", np.full(10, 0.5))
    assert len(buckets) == 1
    assert (assign(np.full(10, 0.5), buckets) == 0).all()


def test_clic_buckets_are_centred_on_the_targets_and_tile_without_gaps():
    buckets = parse("clic", np.array([0.1]))
    assert [b.target for b in buckets] == list(CLIC_TARGETS)
    for b in buckets:
        assert math.isclose(math.sqrt(b.low * b.high), b.target)  # geometric centre
        assert "target 0.075" in buckets[0].label
    assert all(math.isclose(a.high, b.low) for a, b in itertools.pairwise(buckets))
    index = assign(np.array([0.04, 0.075, 0.11, 0.15, 0.3, 0.42, 0.5]), buckets)
    assert index.tolist() == [-1, 0, 1, 1, 2, 2, -1]


def test_clic_with_a_tolerance_keeps_only_images_near_a_target():
    buckets = parse("clic:0.1", np.array([0.1]))
    index = assign(np.array([0.0675, 0.08, 0.09, 0.15, 0.165, 0.166, 0.3]), buckets)
    assert index.tolist() == [0, 0, -1, 1, 1, -1, 2]


def test_explicit_edges_half_open_with_the_last_bucket_closed():
    buckets = parse("0.1, 0.5, 1", np.array([]))
    assert [(b.low, b.high) for b in buckets] == [(0.1, 0.5), (0.5, 1.0)]
    assert assign(np.array([0.05, 0.1, 0.5, 0.99, 1.0, 1.5]), buckets).tolist() == [-1, 0, 1, 1, 1, -1]
    open_ended = parse("0,0.5,inf", np.array([]))
    assert assign(np.array([0.2, 7.0]), open_ended).tolist() == [0, 1]
    assert open_ended[-1].label == "0.5–∞ bpp"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("abc", "not a number"),
        ("0.3", "at least two edges"),
        ("0.3,0.1", "strictly increasing"),
        ("quantiles:0", "at least one bucket"),
        ("quantiles:x", "not a whole number"),
        ("clic:2", "tolerance must be in"),
        ("clic:0.5", "overlap"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(BucketSpecError, match=message):
        parse(spec, np.array([0.1, 0.2]))
