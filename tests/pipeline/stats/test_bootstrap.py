"""The one cluster bootstrap (pipeline.stats.bootstrap): coverage, clusters as the unit, determinism, edge cases,
and its use by Bradley–Terry, BD-rate and regress."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.stats import bdrate, bootstrap
from pipeline.stats import bradley_terry as bt
from pipeline.stats.bootstrap import cluster_bootstrap, cluster_counts, count_chunks


def naive_cluster_bootstrap(values, clusters, n_boot, alpha, seed):
    """Independent reference: loop over replicates, draw cluster labels, concatenate their values."""
    rng = np.random.default_rng(seed)
    labels = sorted(set(clusters))
    by = {c: values[np.asarray(clusters) == c] for c in labels}
    means = []
    for _ in range(n_boot):
        drawn = rng.choice(len(labels), size=len(labels), replace=True)
        means.append(np.concatenate([by[labels[i]] for i in drawn]).mean())
    return np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])


def test_known_worse_gives_an_interval_below_half():
    rng = np.random.default_rng(1)
    refs = np.repeat(np.arange(40), 5)
    p = np.clip(0.35 + rng.normal(0, 0.05, 40)[refs] + rng.normal(0, 0.03, len(refs)), 0, 1)
    (iv,) = cluster_bootstrap(p, refs, n_boot=2000, seed=0)
    assert iv.high < 0.5
    assert iv.low < iv.mean < iv.high
    assert iv.mean == pytest.approx(p.mean(), abs=1e-12)
    assert (iv.n, iv.n_clusters) == (200, 40)


def test_identical_outputs_give_exactly_half():
    (iv,) = cluster_bootstrap(np.full(30, 0.5), np.repeat(np.arange(10), 3), n_boot=500)
    assert iv.low == iv.mean == iv.high == 0.5


def test_interval_matches_a_naive_implementation():
    rng = np.random.default_rng(7)
    refs = np.repeat([f"r{i}" for i in range(25)], 4)
    v = 0.5 + rng.normal(0, 0.08, 25)[np.repeat(np.arange(25), 4)] + rng.normal(0, 0.02, 100)
    (iv,) = cluster_bootstrap(v, refs, n_boot=20000, alpha=0.1, seed=3)
    lo, hi = naive_cluster_bootstrap(v, list(refs), 20000, 0.1, seed=11)
    assert iv.low == pytest.approx(lo, abs=0.004)
    assert iv.high == pytest.approx(hi, abs=0.004)


def test_null_coverage_is_close_to_nominal():
    """Under no change (per-reference effects with mean 0.5) the 90% interval covers 0.5 about 90% of the time."""
    rng = np.random.default_rng(0)
    covered = 0
    trials = 300
    refs = np.repeat(np.arange(30), 3)
    for t in range(trials):
        v = 0.5 + rng.normal(0, 0.05, 30)[refs] + rng.normal(0, 0.02, 90)
        (iv,) = cluster_bootstrap(v, refs, n_boot=1000, alpha=0.1, seed=t)
        covered += iv.low <= 0.5 <= iv.high
    assert 0.82 <= covered / trials <= 0.96


def test_resampling_references_not_rows_widens_correlated_intervals():
    rng = np.random.default_rng(2)
    refs = np.repeat(np.arange(20), 10)
    v = 0.5 + rng.normal(0, 0.1, 20)[refs] + rng.normal(0, 0.01, 200)
    (by_ref,) = cluster_bootstrap(v, refs, n_boot=2000)
    (by_row,) = cluster_bootstrap(v, np.arange(200), n_boot=2000)
    assert (by_ref.high - by_ref.low) > 2.5 * (by_row.high - by_row.low)


def test_seeded_order_invariant_and_columns_share_draws():
    rng = np.random.default_rng(4)
    refs = np.repeat(np.arange(12), 3)
    v = rng.normal(size=(36, 2))
    a = cluster_bootstrap(v, refs, n_boot=800, seed=5)
    b = cluster_bootstrap(v, refs, n_boot=800, seed=5)
    order = rng.permutation(36)
    c = cluster_bootstrap(v[order], refs[order], n_boot=800, seed=5)
    assert a == b
    for x, y in zip(a, c, strict=True):
        assert (x.low, x.high) == pytest.approx((y.low, y.high), abs=1e-12)
    (single,) = cluster_bootstrap(v[:, 1], refs, n_boot=800, seed=5)
    assert (single.low, single.high) == pytest.approx((a[1].low, a[1].high), abs=1e-12)
    assert cluster_bootstrap(v, refs, n_boot=800, seed=6)[0] != a[0]


def test_non_finite_values_are_left_out_per_column():
    refs = np.array([0, 0, 1, 1, 2, 2])
    v = np.array(
        [[0.4, np.nan], [0.6, np.nan], [np.nan, np.nan], [0.2, np.nan], [0.3, np.nan], [np.inf, np.nan]]
    )
    iv, empty = cluster_bootstrap(v, refs, n_boot=200)
    assert iv.mean == pytest.approx(np.mean([0.4, 0.6, 0.2, 0.3]))
    assert (iv.n, iv.n_clusters) == (4, 3)
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.low)


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        cluster_bootstrap([0.5], [0], alpha=1.5)
    with pytest.raises(ValueError, match="one label per value"):
        cluster_bootstrap([0.5, 0.4], [0])
    assert math.isnan(cluster_bootstrap([], [])[0].mean)


def test_interval_covers_the_true_mean_of_a_skewed_distribution_at_the_nominal_rate():
    """Clusters with exponential effects (true mean 1): the 95% interval covers 1 in about 95% of samples."""
    rng = np.random.default_rng(11)
    refs = np.repeat(np.arange(40), 4)
    trials, covered = 300, 0
    for t in range(trials):
        v = rng.exponential(1.0, 40)[refs] + rng.normal(0, 0.2, len(refs))
        (iv,) = cluster_bootstrap(v, refs, n_boot=1000, alpha=0.05, seed=t)
        covered += iv.low <= 1.0 <= iv.high
    assert 0.89 <= covered / trials <= 0.99, covered / trials


def test_resampling_rows_instead_of_clusters_would_undercover():
    """The same data with every row its own cluster: correlated rows make that interval far too narrow."""
    rng = np.random.default_rng(12)
    refs = np.repeat(np.arange(20), 10)
    trials, by_ref, by_row = 150, 0, 0
    for t in range(trials):
        v = rng.normal(0, 1, 20)[refs] + rng.normal(0, 0.1, len(refs))
        (a,) = cluster_bootstrap(v, refs, n_boot=400, alpha=0.1, seed=t)
        (b,) = cluster_bootstrap(v, np.arange(len(v)), n_boot=400, alpha=0.1, seed=t)
        by_ref += a.low <= 0.0 <= a.high
        by_row += b.low <= 0.0 <= b.high
    assert by_ref / trials >= 0.8 and by_row / trials <= 0.55


def test_a_cluster_moves_as_one():
    """One cluster of 100 rows among 9 single-row clusters: each replicate weighs it by its draw count, whole."""
    values = np.r_[np.ones(100), np.zeros(9)]
    clusters = np.r_[np.zeros(100, dtype=int), np.arange(1, 10)]
    (iv,) = cluster_bootstrap(values, clusters, n_boot=500, alpha=0.1, seed=3)
    counts = cluster_counts(10, 500, seed=3)  # cluster 0 first: labels are numbered in sorted order
    means = 100 * counts[:, 0] / (100 * counts[:, 0] + counts[:, 1:].sum(axis=1))
    lo, hi = np.percentile(means, [5, 95])
    assert (iv.low, iv.high) == pytest.approx((lo, hi), abs=1e-12)
    assert iv.n == 109 and iv.n_clusters == 10


def test_repeating_rows_within_their_clusters_changes_nothing():
    rng = np.random.default_rng(5)
    refs = np.repeat(np.arange(15), 2)
    v = rng.normal(size=30)
    (once,) = cluster_bootstrap(v, refs, n_boot=600, seed=2)
    (thrice,) = cluster_bootstrap(np.tile(v, 3), np.tile(refs, 3), n_boot=600, seed=2)
    assert (thrice.mean, thrice.low, thrice.high) == pytest.approx(
        (once.mean, once.low, once.high), abs=1e-12
    )


def test_counts_are_integer_draws_of_every_cluster_and_chunking_keeps_the_stream():
    counts = cluster_counts(7, 5000, seed=9)
    assert counts.shape == (5000, 7) and (counts.sum(axis=1) == 7).all()
    assert np.all(counts == np.round(counts)) and counts.mean(axis=0) == pytest.approx(np.ones(7), abs=0.05)
    # the distribution of integer draws: P(a given cluster is not drawn) = (1 - 1/n)^n
    assert (counts[:, 0] == 0).mean() == pytest.approx((6 / 7) ** 7, abs=0.02)
    chunked = np.concatenate([c for _, c in count_chunks(7, 5000, seed=9, max_entries=7 * 3)])
    np.testing.assert_array_equal(chunked, counts)
    np.testing.assert_array_equal(cluster_counts(7, 50, seed=9), cluster_counts(7, 50, seed=9))
    assert not np.array_equal(cluster_counts(7, 50, seed=9), cluster_counts(7, 50, seed=10))


def test_cluster_numbering_is_sorted_and_survives_mixed_labels():
    codes, labels = bootstrap.cluster_codes(["b", "a", "b", "c"])
    assert labels == ["a", "b", "c"] and codes.tolist() == [1, 0, 1, 2]
    codes, labels = bootstrap.cluster_codes(["x", 1, "x"])
    assert set(labels) == {"x", 1} and codes[0] == codes[2] != codes[1]


def test_degenerate_inputs():
    (one,) = cluster_bootstrap([0.2, 0.4, 0.9], ["only"] * 3, n_boot=100)
    assert one.low == one.mean == one.high == pytest.approx(0.5) and one.n_clusters == 1
    (empty,) = cluster_bootstrap(np.empty((0, 1)), [], n_boot=100)
    assert math.isnan(empty.mean) and math.isnan(empty.low) and empty.n == 0
    with pytest.raises(ValueError, match="at least one cluster"):
        cluster_counts(0, 10, seed=0)
    with pytest.raises(ValueError, match="n_boot"):
        cluster_counts(3, 0, seed=0)
    low, high = bootstrap.percentiles(np.full((5, 2), np.nan), 0.05)
    assert np.isnan(low).all() and np.isnan(high).all()


# ---------------------------------------------------------------------------------------------- its users


def test_bradley_terry_replicates_do_not_depend_on_row_order():
    rng = np.random.default_rng(1)
    n = 60
    df = pd.DataFrame(
        {
            "a": rng.choice(["jpeg", "webp"], n),
            "ref_id": rng.choice([f"r{i}" for i in range(10)], n),
            "p_a": rng.uniform(0.2, 0.8, n),
        }
    )
    df["b"] = np.where(df["a"] == "jpeg", "avif", "jpeg")
    order = rng.permutation(n)
    args = {"n_boot": 60, "seed": 4}
    _, fwd = bt.bootstrap_samples(df.a, df.b, df.p_a, df.ref_id, **args)
    shuffled = df.iloc[order]
    _, rev = bt.bootstrap_samples(shuffled.a, shuffled.b, shuffled.p_a, shuffled.ref_id, **args)
    np.testing.assert_allclose(fwd, rev, atol=1e-8)


def test_bd_rate_interval_is_the_cluster_bootstrap_of_the_per_image_values():
    rate, psnr = np.array([0.25, 0.5, 0.9, 1.6, 2.8]), np.array([28.0, 31.5, 34.0, 37.2, 40.1])
    rows = []
    factors = np.linspace(0.6, 1.0, 9)
    for i, k in enumerate(factors):
        for codec, f in (("anchor", 1.0), ("test", k)):
            rows += [
                {"ref_id": f"i{i}", "codec": codec, "bpp": f * r, "psnr": q}
                for r, q in zip(rate, psnr, strict=True)
            ]
    out = bdrate.bd_rate_per_image(pd.DataFrame(rows), anchor="anchor", n_boot=300, seed=8).iloc[0]
    (iv,) = cluster_bootstrap((factors - 1) * 100, np.arange(len(factors)), n_boot=300, seed=8)
    assert (out.ci_low, out.ci_high) == pytest.approx((iv.low, iv.high), abs=1e-9)
