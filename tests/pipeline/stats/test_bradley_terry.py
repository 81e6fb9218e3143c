"""Bradley–Terry with soft outcomes: agreement with choix, recovery, bootstrap coverage, invariances, ranks."""

from __future__ import annotations

import choix
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from scipy.stats import spearmanr

from pipeline.stats import bradley_terry as bt


def _simulate(
    rng: np.random.Generator,
    strengths: np.ndarray,
    n_clusters: int,
    per_cluster: int,
    judges: int = 3,
    cluster_sd: float = 0.0,
) -> pd.DataFrame:
    """Comparisons of random item pairs; p_a is the fraction of ``judges`` Bernoulli draws won by a.

    With ``cluster_sd`` > 0 each cluster perturbs every item's strength (content effects), which makes the
    comparisons of one cluster correlated.
    """
    n = len(strengths)
    rows = []
    for k in range(n_clusters):
        s = strengths + rng.normal(0, cluster_sd, n) if cluster_sd else strengths
        a = rng.integers(0, n, per_cluster)
        b = (a + rng.integers(1, n, per_cluster)) % n
        p = rng.binomial(judges, expit(s[a] - s[b])) / judges
        rows.append(pd.DataFrame({"a": a, "b": b, "p_a": p, "ref_id": f"ref{k}"}))
    return pd.concat(rows, ignore_index=True)


def test_matches_choix_on_hard_outcomes():
    rng = np.random.default_rng(7)
    n = 8
    df = _simulate(rng, rng.normal(0, 1, n), n_clusters=1, per_cluster=300, judges=1)
    prior = 0.1
    ours = bt.fit(df.a, df.b, df.p_a, prior=prior)
    data = [
        (a, b) if p == 1 else (b, a)
        for a, b, p in zip(df.a.tolist(), df.b.tolist(), df.p_a.tolist(), strict=True)
    ]
    # choix penalises alpha * sum(s**2); we use (prior / 2) * sum(s**2)
    theirs = choix.opt_pairwise(n, data, alpha=prior / 2, tol=1e-12)
    assert ours.converged
    np.testing.assert_allclose(ours.scores, theirs - theirs.mean(), atol=1e-7)
    assert ours.items == list(range(n))


def test_matches_choix_on_soft_outcomes_expanded_into_hard_ones():
    # a soft outcome k/4 is exactly k hard wins of a and 4 - k of b, each of weight 1/4
    rng = np.random.default_rng(3)
    n = 6
    df = _simulate(rng, np.linspace(-1.5, 1.5, n), n_clusters=1, per_cluster=200, judges=4)
    prior = 0.05
    ours = bt.fit(df.a.astype(str), df.b.astype(str), df.p_a, prior=prior)
    data = []
    for a, b, p in zip(df.a.tolist(), df.b.tolist(), df.p_a.tolist(), strict=True):
        wins = round(4 * p)
        data += [(a, b)] * wins + [(b, a)] * (4 - wins)
    # choix's objective is 4x ours, so its penalty must be 4x too: alpha = 4 * prior / 2
    theirs = choix.opt_pairwise(n, data, alpha=2 * prior, tol=1e-12)
    ours_by_int = np.array([ours.score(str(i)) for i in range(n)])
    np.testing.assert_allclose(ours_by_int, theirs - theirs.mean(), atol=1e-7)


def test_recovers_known_strengths():
    rng = np.random.default_rng(11)
    strengths = np.linspace(-2, 2, 10)
    df = _simulate(rng, strengths, n_clusters=100, per_cluster=200)
    result = bt.fit(df.a, df.b, df.p_a)
    assert spearmanr(result.scores, strengths).statistic == pytest.approx(1.0)
    assert np.all(np.diff(result.scores) > 0)
    np.testing.assert_allclose(result.scores, strengths - strengths.mean(), atol=0.1)
    assert result.scores.sum() == pytest.approx(0.0, abs=1e-9)
    # P(i beats j) is the logistic of the score difference
    assert result.prob(9, 0) == pytest.approx(expit(result.scores[9] - result.scores[0]))
    pm = result.prob_matrix()
    np.testing.assert_allclose(pm.to_numpy() + pm.to_numpy().T, 1.0)
    assert pm.loc[9, 0] == pytest.approx(result.prob(9, 0))


def test_bootstrap_intervals_cover_the_truth():
    rng = np.random.default_rng(2024)
    strengths = np.array([-1.0, -0.4, 0.0, 0.3, 0.5, 1.2])
    truth = strengths - strengths.mean()
    covered = []
    for rep in range(40):
        df = _simulate(rng, strengths, n_clusters=30, per_cluster=20)
        out = bt.bootstrap(df, n_boot=200, alpha=0.05, seed=rep).set_index("item").loc[range(len(strengths))]
        covered.extend(((out.ci_low <= truth) & (truth <= out.ci_high)).tolist())
    coverage = float(np.mean(covered))  # 0.94 with this seed; 0.90-0.95 across seeds
    assert 0.85 <= coverage <= 0.99, coverage


def test_cluster_bootstrap_is_wider_than_pair_bootstrap_under_content_effects():
    rng = np.random.default_rng(5)
    df = _simulate(rng, np.linspace(-1, 1, 5), n_clusters=25, per_cluster=40, cluster_sd=0.8)
    by_cluster = bt.bootstrap(df, n_boot=300, seed=1)
    by_pair = bt.bootstrap(df.assign(row=np.arange(len(df))), cluster_col="row", n_boot=300, seed=1)
    width_cluster = (by_cluster.ci_high - by_cluster.ci_low).mean()
    width_pair = (by_pair.ci_high - by_pair.ci_low).mean()
    assert width_cluster > 1.3 * width_pair
    pd.testing.assert_series_equal(by_cluster.score, by_pair.score)


def test_swapping_sides_gives_the_same_fit():
    rng = np.random.default_rng(9)
    df = _simulate(rng, rng.normal(0, 1, 7), n_clusters=5, per_cluster=50)
    w = rng.uniform(0.5, 2.0, len(df))
    fwd = bt.fit(df.a, df.b, df.p_a, weights=w)
    rev = bt.fit(df.b, df.a, 1 - df.p_a, weights=w)
    np.testing.assert_allclose(fwd.scores, rev.scores, atol=1e-10)
    np.testing.assert_allclose(fwd.win_rate, rev.win_rate, atol=1e-12)
    # swapping only some rows changes nothing either
    flip = rng.random(len(df)) < 0.5
    a = np.where(flip, df.b, df.a)
    b = np.where(flip, df.a, df.b)
    p = np.where(flip, 1 - df.p_a, df.p_a)
    np.testing.assert_allclose(bt.fit(a, b, p, weights=w).scores, fwd.scores, atol=1e-10)


def test_integer_weights_equal_repeated_rows():
    a, b, p = ["x", "y", "z", "x"], ["y", "z", "x", "z"], [0.9, 0.2, 0.5, 0.7]
    weighted = bt.fit(a, b, p, weights=[3, 1, 2, 1])
    repeated = bt.fit(
        ["x"] * 3 + ["y"] + ["z"] * 2 + ["x"],
        ["y"] * 3 + ["z"] + ["x"] * 2 + ["z"],
        [0.9] * 3 + [0.2] + [0.5] * 2 + [0.7],
    )
    np.testing.assert_allclose(weighted.scores, repeated.scores, atol=1e-10)


def test_perfect_separation_and_disconnected_graph_stay_finite():
    # a chain of hard wins: A > B > C > D, every comparison won by the better item
    a = ["A", "B", "C", "A", "B"] * 3
    b = ["B", "C", "D", "C", "D"] * 3
    result = bt.fit(a, b, np.ones(len(a)))
    assert np.all(np.isfinite(result.scores)) and result.converged
    assert [result.items[i] for i in np.argsort(-result.scores)] == ["A", "B", "C", "D"]
    assert result.win_rate.tolist() == [1.0, 2 / 3, 1 / 3, 0.0]
    # two components never compared with each other: finite, each centred by the prior
    result = bt.fit(["a", "c"], ["b", "d"], [1.0, 0.0])
    assert np.all(np.isfinite(result.scores))
    assert result.score("a") > result.score("b") and result.score("d") > result.score("c")
    assert result.score("a") + result.score("b") == pytest.approx(0.0, abs=1e-12)
    # the bootstrap of separated data is finite too
    df = pd.DataFrame({"a": a, "b": b, "p_a": 1.0, "ref_id": np.arange(len(a)) % 4})
    out = bt.bootstrap(df, n_boot=50)
    assert np.all(np.isfinite(out[["score", "ci_low", "ci_high"]].to_numpy()))
    assert out["item"].tolist() == ["A", "B", "C", "D"]


def test_rank_rule_on_constructed_intervals():
    low = np.array([3.0, 2.5, 1.0, 0.2, -1.0])
    high = np.array([4.0, 3.5, 2.0, 1.1, 0.5])
    # item 0 and 1 overlap: both rank 1; item 2 is below both; item 3 below 0, 1 (and overlaps 2? 1.1 > 1.0)
    assert bt.ranks_from_intervals(low, high).tolist() == [1, 1, 3, 3, 4]


def test_rank_rule_in_bootstrap_output():
    # three tiers, far apart, with two indistinguishable items in the middle tier
    rng = np.random.default_rng(1)
    df = _simulate(rng, np.array([2.0, 0.0, 0.0, -2.0]), n_clusters=40, per_cluster=60)
    out = bt.bootstrap(df, n_boot=200)
    ranks = dict(zip(out["item"], out["rank"], strict=True))
    assert ranks[0] == 1 and ranks[1] == 2 and ranks[2] == 2 and ranks[3] == 4
    expected = bt.ranks_from_intervals(out.ci_low.to_numpy(), out.ci_high.to_numpy())
    assert out["rank"].tolist() == expected.tolist()


def test_bootstrap_table():
    rng = np.random.default_rng(4)
    df = _simulate(rng, np.array([0.5, 0.0, -0.5]), n_clusters=12, per_cluster=30)
    df["a"] = df["a"].map({0: "jpeg", 1: "webp", 2: "avif"})
    df["b"] = df["b"].map({0: "jpeg", 1: "webp", 2: "avif"})
    out = bt.bootstrap(df, items=["jpeg", "webp", "avif", "jxl"], n_boot=100, seed=3)
    assert list(out.columns) == [
        "item",
        "score",
        "ci_low",
        "ci_high",
        "se",
        "rank",
        "win_rate",
        "n_comparisons",
        "n_clusters",
    ]
    assert out.score.is_monotonic_decreasing
    jxl = out.set_index("item").loc["jxl"]
    assert jxl.n_comparisons == 0 and jxl.n_clusters == 0 and np.isnan(jxl.ci_low) and np.isnan(jxl.win_rate)
    rated = out[out.item != "jxl"]
    assert (rated.ci_low <= rated.score).all() and (rated.score <= rated.ci_high).all()
    assert (rated.n_clusters == 12).all()
    assert out.attrs == {"n_boot": 100, "alpha": 0.05, "seed": 3, "prior": bt.DEFAULT_PRIOR}
    again = bt.bootstrap(df, items=["jpeg", "webp", "avif", "jxl"], n_boot=100, seed=3)
    pd.testing.assert_frame_equal(out, again)


def test_bootstrap_samples_mark_absent_items():
    # "b" appears only in cluster 0, "c" only in cluster 1: a replicate that draws one cluster twice has no
    # score for the other's item; "a" is in both and always scored
    a, b = ["a", "a", "a"], ["b", "b", "c"]
    items, samples = bt.bootstrap_samples(a, b, [0.7, 0.6, 0.5], [0, 0, 1], n_boot=200, seed=0)
    assert items == ["a", "b", "c"]
    absent = np.isnan(samples)
    assert not absent[:, 0].any()
    assert 0 < absent[:, 1].sum() < 200 and 0 < absent[:, 2].sum() < 200
    assert not (absent[:, 1] & absent[:, 2]).any()
    np.testing.assert_allclose(np.nanmean(samples, axis=1), 0.0, atol=1e-12)


def test_win_matrix():
    a = ["x", "x", "y", "z"]
    b = ["y", "y", "x", "w"]
    p = [0.8, 0.6, 0.3, 1.0]
    m = bt.win_matrix(a, b, p, items=["x", "y", "z", "w", "v"])
    # x vs y: 0.8, 0.6 and (1 - 0.3) -> mean 0.7
    assert m.loc["x", "y"] == pytest.approx(0.7)
    assert m.loc["y", "x"] == pytest.approx(0.3)
    assert m.loc["z", "w"] == 1.0 and m.loc["w", "z"] == 0.0
    assert np.isnan(m.loc["x", "z"]) and np.isnan(m.loc["x", "x"]) and m["v"].isna().all()
    values = m.to_numpy()
    both = ~np.isnan(values)
    np.testing.assert_allclose((values + values.T)[both], 1.0)


def test_items_order_and_uncompared_items():
    result = bt.fit(["b", "a"], ["a", "c"], [0.5, 0.5], items=["c", "b", "a", "d"])
    assert result.items == ["c", "b", "a", "d"]
    assert (
        result.score("d") == 0.0
        and np.isnan(result.win_rate[3])
        and result.n_comparisons.tolist() == [1, 1, 2, 0]
    )
    frame = result.to_frame()
    assert set(frame.columns) == {"item", "score", "win_rate", "n_comparisons"}
    with pytest.raises(KeyError):
        result.score("zzz")


@pytest.mark.parametrize(
    ("a", "b", "p", "items", "match"),
    [
        (["x"], ["y"], [1.5], None, "in \\[0, 1\\]"),
        (["x"], ["y"], [np.nan], None, "in \\[0, 1\\]"),
        (["x", "y"], ["y"], [0.5, 0.5], None, "equal length"),
        (["x"], ["x"], [0.5], None, "itself"),
        (["x"], ["q"], [0.5], ["x", "y"], "not in `items`"),
    ],
)
def test_invalid_input_raises(a, b, p, items, match):
    with pytest.raises(ValueError, match=match):
        bt.fit(a, b, p, items=items)


def test_invalid_prior_raises():
    with pytest.raises(ValueError, match="prior"):
        bt.fit(["x"], ["y"], [1.0], prior=0.0)
