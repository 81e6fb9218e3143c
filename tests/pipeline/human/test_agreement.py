"""How often a judge agrees with people (pipeline.human.agreement), checked by hand on a small table: ties count
half, the majority ceiling with a tied pair, the bootstrap over originals, rank correlations against scipy and
the textbook formulas, Bradley–Terry on a 3-method toy; and the mucped23 development figure on the answers between
bit-exact encodings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pipeline.human import agreement as ag
from pipeline.human import study
from pipeline.stats import bdrate, bootstrap

MUCPED23 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mucped23"
needs_mucped23 = pytest.mark.skipif(
    not (MUCPED23 / "reproduced_bytes.csv").is_file(), reason=f"mucped23 data not found at {MUCPED23}"
)


@pytest.fixture
def pairs() -> pd.DataFrame:
    # o1: x-y 3:1, x-z 1:1 (a tied vote); o2: x-y 0:2, y-z 2:1
    return pd.DataFrame(
        {
            "original": ["o1", "o1", "o2", "o2"],
            "a": ["x", "x", "x", "y"],
            "b": ["y", "z", "y", "z"],
            "n_a": [3, 1, 0, 2],
            "n_b": [1, 1, 2, 1],
        }
    )


JUDGE = [1.0, 0.0, 0.5, 0.7]  # prefers a, prefers b, a tie, prefers a (soft)


def test_agreement_by_hand_with_a_tie(pairs):
    # row 1: 3 of 4 for a; row 2: 1 of 2 for b; row 3: tie, half of 2; row 4: 2 of 3 for a -> 7 of 11
    assert ag.agreeing_answers(pairs, JUDGE).tolist() == [3.0, 1.0, 1.0, 2.0]
    table = ag.agreement_table(pairs, {"judge": JUDGE}, n_boot=200)
    row = table.set_index("judge").loc["judge"]
    assert row["agreement"] == pytest.approx(7 / 11)
    assert (row["n_answers"], row["n_pairs"], row["n_originals"], row["n_missing"]) == (11, 4, 2, 0)


def test_majority_ceiling_counts_a_tied_pair_half(pairs):
    # majorities: 3, tie -> 1 of 2, 2, 2 -> 8 of 11
    assert ag.ceiling_answers(pairs).tolist() == [3.0, 1.0, 2.0, 2.0]
    table = ag.agreement_table(pairs, {}, n_boot=200)
    assert table["judge"].tolist() == [ag.CEILING]
    assert table["agreement"].iloc[0] == pytest.approx(8 / 11)


def test_a_judge_without_preference_on_a_row_leaves_it_out(pairs):
    table = ag.agreement_table(pairs, {"j": [1.0, np.nan, 0.5, 0.7]}, n_boot=200).set_index("judge")
    assert table.loc["j", "agreement"] == pytest.approx(6 / 9)
    assert (table.loc["j", "n_answers"], table.loc["j", "n_missing"]) == (9, 1)


def test_interval_resamples_originals(pairs):
    """With two originals a replicate holds o1 twice (4/6), o2 twice (3/5) or both (7/11), each of the first two
    with probability 1/4, so the 2.5 and 97.5 percentiles are exactly 3/5 and 4/6; resampling rows would give
    other values."""
    table = ag.agreement_table(pairs, {"judge": JUDGE}, n_boot=2000, seed=3).set_index("judge")
    assert table.loc["judge", "ci_low"] == pytest.approx(3 / 5)
    assert table.loc["judge", "ci_high"] == pytest.approx(4 / 6)


def test_interval_is_deterministic_and_independent_of_row_order():
    rng = np.random.default_rng(0)
    n_rows = 200
    df = pd.DataFrame(
        {
            "original": rng.integers(0, 20, n_rows).astype(str),
            "a": "x",
            "b": "y",
            "n_a": rng.integers(0, 4, n_rows),
            "n_b": rng.integers(0, 4, n_rows),
        }
    )
    df = df[df.n_a + df.n_b > 0].reset_index(drop=True)
    pref = rng.choice([0.0, 0.5, 1.0], len(df))
    first = ag.agreement_table(df, {"j": pref}, n_boot=500, seed=7)
    again = ag.agreement_table(df, {"j": pref}, n_boot=500, seed=7)
    pd.testing.assert_frame_equal(first, again)
    order = rng.permutation(len(df))
    shuffled = ag.agreement_table(
        df.iloc[order].reset_index(drop=True), {"j": pref[order]}, n_boot=500, seed=7
    )
    pd.testing.assert_frame_equal(first, shuffled)
    other = ag.agreement_table(df, {"j": pref}, n_boot=500, seed=8)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    # the same as the one cluster bootstrap over the answers themselves (one value per answer, the same draws)
    agreed = ag.agreeing_answers(df, pref)
    n = (df.n_a + df.n_b).to_numpy()
    values, clusters = [], []
    for o, k, good in zip(df.original, n, agreed, strict=True):
        per_answer = (
            good / k
        )  # every answer of a row agrees equally on average: rows of k answers, `good` agree
        values += [per_answer] * k
        clusters += [o] * k
    (iv,) = bootstrap.cluster_bootstrap(values, clusters, n_boot=500, seed=7)
    row = first.set_index("judge").loc["j"]
    assert row["agreement"] == pytest.approx(iv.mean)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((iv.low, iv.high))


def test_groups_by_hand(pairs):
    groups = {"pairing": ag.encoder_pairing(["f", "f", "f", "f"], ["f", "g", "f", "g"])}
    table = ag.agreement_table(pairs, {"judge": JUDGE}, groups=groups, n_boot=100).set_index(
        ["judge", "group"]
    )
    # same encoder: rows 1 and 3 -> (3 + 1) of (4 + 2); cross: rows 2 and 4 -> (1 + 2) of (2 + 3)
    assert table.loc[("judge", "pairing: same encoder"), "agreement"] == pytest.approx(4 / 6)
    assert table.loc[("judge", "pairing: cross encoder"), "agreement"] == pytest.approx(3 / 5)
    assert table.loc[(ag.CEILING, "pairing: same encoder"), "agreement"] == pytest.approx(5 / 6)
    assert table.loc[(ag.CEILING, "pairing: cross encoder"), "n_pairs"] == 2


def test_bpp_range_labels():
    labels = ag.bpp_range([0.5, 1.2, 2.0, np.nan], [0.7, 1.6, 4.0, 1.0], edges=(0, 1, 2, np.inf))
    assert labels.tolist() == ["bpp [0, 1)", "bpp [1, 2)", "bpp [2, inf)", None]


def test_preference_from_scores():
    pref = ag.preference_from_scores([30, 20, 25, math.inf, np.nan], [20, 30, 25, math.inf, 1])
    assert pref[:4].tolist() == [1.0, 0.0, 0.5, 0.5] and np.isnan(pref[4])
    lower = ag.preference_from_scores([1.0, 2.0], [2.0, 1.0], higher_is_better=False)
    assert lower.tolist() == [1.0, 0.0]


def test_bad_inputs(pairs):
    with pytest.raises(ValueError, match="one preference per pair row"):
        ag.agreement_table(pairs, {"j": [1.0]})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ag.agreement_table(pairs, {"j": [2.0, 0, 0, 0]})
    with pytest.raises(ValueError, match="missing column"):
        ag.agreement_table(pairs.drop(columns="n_b"), {})


# ----------------------------------------------------------------------------------------------------------------
# method level


def toy_methods() -> pd.DataFrame:
    # consistent log-odds: x vs y 2:1, y vs z 2:1, x vs z 4:1, spread over 10 originals
    rows = []
    for o in range(10):
        rows += [(f"o{o}", "x", "y", 20, 10), (f"o{o}", "y", "z", 20, 10), (f"o{o}", "x", "z", 40, 10)]
    return pd.DataFrame(rows, columns=["original", "a", "b", "n_a", "n_b"])


def test_bradley_terry_on_a_three_method_toy():
    items, scores, samples = ag.method_scores(toy_methods(), n_boot=50)
    assert items == ["x", "y", "z"]
    # the saturated fit: s_x - s_y = s_y - s_z = ln 2, centred -> (ln 2, 0, -ln 2), up to the weak prior
    assert scores == pytest.approx([math.log(2), 0.0, -math.log(2)], abs=2e-3)
    assert samples.shape == (50, 3)
    assert np.allclose(samples, samples[0], atol=2e-3)  # every original says the same


def spearman_formula(x, y):
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    n = len(x)
    return 1 - 6 * ((rx - ry) ** 2).sum() / (n * (n * n - 1))


def kendall_formula(x, y):
    n, s = len(x), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (n * (n - 1) / 2)


def test_rank_correlation_against_scipy_and_formulas():
    rng = np.random.default_rng(5)
    methods = [f"m{i}" for i in range(6)]
    strength = dict(zip(methods, np.linspace(-2, 2, 6), strict=True))
    rows = []
    for o in range(12):
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                p = 1 / (1 + math.exp(strength[b] - strength[a]))
                k = 3
                n_a = int(rng.binomial(k, p))
                rows.append((f"o{o}", a, b, n_a, k - n_a))
    df = pd.DataFrame(rows, columns=["original", "a", "b", "n_a", "n_b"])
    # a judge that knows the strengths except that it swaps m1 and m4
    judged = {m: s for m, s in strength.items()} | {"m1": strength["m4"], "m4": strength["m1"]}
    pref = ag.preference_from_scores(df.a.map(judged), df.b.map(judged))
    table = ag.rank_correlation(df, {"j": pref}, n_boot=100, seed=1).set_index("judge")
    _, human, _ = ag.method_scores(df, n_boot=1)
    _, judge, _ = ag.method_scores(df, pref, n_boot=1)
    rho, tau = table.loc["j", "spearman"], table.loc["j", "kendall"]
    assert rho == pytest.approx(sps.spearmanr(human, judge).statistic)
    assert tau == pytest.approx(sps.kendalltau(human, judge).statistic)
    assert rho == pytest.approx(spearman_formula(human, judge))
    assert tau == pytest.approx(kendall_formula(human, judge))
    assert table.loc["j", "spearman_low"] <= rho <= table.loc["j", "spearman_high"]
    assert table.loc["j", "n_methods"] == 6
    again = ag.rank_correlation(df, {"j": pref}, n_boot=100, seed=1)
    pd.testing.assert_frame_equal(table.reset_index(), again)


def test_bd_rate_on_the_human_axis():
    # two families of 4 methods each; family t reaches each anchor score at 80 % of the bits
    scores = np.linspace(-1.5, 1.5, 4)
    rows = []
    names = [f"a{i}" for i in range(4)] + [f"t{i}" for i in range(4)]
    strength = dict(zip(names, list(scores) + list(scores), strict=True))
    for o in range(8):
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                p = 1 / (1 + math.exp(strength[b] - strength[a]))
                rows.append((f"o{o}", a, b, 100 * p, 100 * (1 - p)))
    df = pd.DataFrame(rows, columns=["original", "a", "b", "n_a", "n_b"])
    bpp = {f"a{i}": r for i, r in enumerate([0.5, 1.0, 1.5, 2.0])} | {
        f"t{i}": 0.8 * r for i, r in enumerate([0.5, 1.0, 1.5, 2.0])
    }
    curves = {"anchor": names[:4], "test": names[4:]}
    table = ag.bd_rate_table(df, {}, bpp, curves, anchor="anchor", test="test", n_boot=50)
    people = table.set_index("judge").loc["people"]
    assert people["bd_rate"] == pytest.approx(-20.0, abs=0.1)
    items, s, _ = ag.method_scores(df, n_boot=1)
    s = dict(zip(items, s, strict=True))
    direct = bdrate.bd_rate(
        [bpp[m] for m in names[:4]],
        [s[m] for m in names[:4]],
        [bpp[m] for m in names[4:]],
        [s[m] for m in names[4:]],
    )
    assert people["bd_rate"] == pytest.approx(direct.value)
    assert people["n_valid"] == 50 and people["reason"] == ""


# ----------------------------------------------------------------------------------------------------------------
# the mucped23 development figure


@needs_mucped23
def test_mucped23_ceiling_and_file_size_on_the_bit_exact_encodings():
    """On the 2,012 answers between libjpeg-turbo and mozjpeg methods (the encodings regenerated bit for bit), the
    majority-vote ceiling is 0.896 and file size alone (the larger file is judged closer) agrees 0.710."""
    methods = study.read_methods(str(MUCPED23 / "methods.csv"))
    answers = study.read_answers(str(MUCPED23 / "answers.csv"), methods=methods)
    files = pd.read_csv(MUCPED23 / "reproduced_bytes.csv", dtype={"originalName": str})
    exact = set(files["method"])
    assert len(exact) == 15
    pairs = study.aggregate(answers)
    pairs = pairs[pairs.a.isin(exact) & pairs.b.isin(exact)].reset_index(drop=True)
    size = files.set_index(["method", "originalName"])["bytes"]
    size_a = size.reindex(pd.MultiIndex.from_arrays([pairs.a, pairs.original])).to_numpy()
    size_b = size.reindex(pd.MultiIndex.from_arrays([pairs.b, pairs.original])).to_numpy()
    table = ag.agreement_table(
        pairs, {"file size": ag.preference_from_scores(size_a, size_b)}, n_boot=500
    ).set_index("judge")
    assert table.loc[ag.CEILING, "n_answers"] == 2012
    assert table.loc[ag.CEILING, "agreement"] == pytest.approx(0.896, abs=5e-4)
    assert table.loc["file size", "agreement"] == pytest.approx(0.710, abs=5e-4)
    assert table.loc["file size", "ci_low"] < 0.710 < table.loc["file size", "ci_high"]
