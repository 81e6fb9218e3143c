"""The pure part of `regress`: cluster bootstrap, run matching, triplet groups, statistics, criteria, verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline import regress as rg
from pipeline.scoring import pairing

# ---------------------------------------------------------------------------------------------- bootstrap


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
    (iv,) = rg.cluster_bootstrap(p, refs, n_boot=2000, seed=0)
    assert iv.high < 0.5
    assert iv.low < iv.mean < iv.high
    assert iv.mean == pytest.approx(p.mean(), abs=1e-12)
    assert (iv.n, iv.n_clusters) == (200, 40)


def test_identical_outputs_give_exactly_half():
    (iv,) = rg.cluster_bootstrap(np.full(30, 0.5), np.repeat(np.arange(10), 3), n_boot=500)
    assert iv.low == iv.mean == iv.high == 0.5


def test_interval_matches_a_naive_implementation():
    rng = np.random.default_rng(7)
    refs = np.repeat([f"r{i}" for i in range(25)], 4)
    v = 0.5 + rng.normal(0, 0.08, 25)[np.repeat(np.arange(25), 4)] + rng.normal(0, 0.02, 100)
    (iv,) = rg.cluster_bootstrap(v, refs, n_boot=20000, alpha=0.1, seed=3)
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
        (iv,) = rg.cluster_bootstrap(v, refs, n_boot=1000, alpha=0.1, seed=t)
        covered += iv.low <= 0.5 <= iv.high
    assert 0.82 <= covered / trials <= 0.96


def test_resampling_references_not_rows_widens_correlated_intervals():
    rng = np.random.default_rng(2)
    refs = np.repeat(np.arange(20), 10)
    v = 0.5 + rng.normal(0, 0.1, 20)[refs] + rng.normal(0, 0.01, 200)
    (by_ref,) = rg.cluster_bootstrap(v, refs, n_boot=2000)
    (by_row,) = rg.cluster_bootstrap(v, np.arange(200), n_boot=2000)
    assert (by_ref.high - by_ref.low) > 2.5 * (by_row.high - by_row.low)


def test_seeded_order_invariant_and_columns_share_draws():
    rng = np.random.default_rng(4)
    refs = np.repeat(np.arange(12), 3)
    v = rng.normal(size=(36, 2))
    a = rg.cluster_bootstrap(v, refs, n_boot=800, seed=5)
    b = rg.cluster_bootstrap(v, refs, n_boot=800, seed=5)
    order = rng.permutation(36)
    c = rg.cluster_bootstrap(v[order], refs[order], n_boot=800, seed=5)
    assert a == b
    for x, y in zip(a, c, strict=True):
        assert (x.low, x.high) == pytest.approx((y.low, y.high), abs=1e-12)
    (single,) = rg.cluster_bootstrap(v[:, 1], refs, n_boot=800, seed=5)
    assert (single.low, single.high) == pytest.approx((a[1].low, a[1].high), abs=1e-12)
    assert rg.cluster_bootstrap(v, refs, n_boot=800, seed=6)[0] != a[0]


def test_non_finite_values_are_left_out_per_column():
    refs = np.array([0, 0, 1, 1, 2, 2])
    v = np.array(
        [[0.4, np.nan], [0.6, np.nan], [np.nan, np.nan], [0.2, np.nan], [0.3, np.nan], [np.inf, np.nan]]
    )
    iv, empty = rg.cluster_bootstrap(v, refs, n_boot=200)
    assert iv.mean == pytest.approx(np.mean([0.4, 0.6, 0.2, 0.3]))
    assert (iv.n, iv.n_clusters) == (4, 3)
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.low)


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        rg.cluster_bootstrap([0.5], [0], alpha=1.5)
    with pytest.raises(ValueError, match="one label per value"):
        rg.cluster_bootstrap([0.5, 0.4], [0])
    assert math.isnan(rg.cluster_bootstrap([], [])[0].mean)


# ---------------------------------------------------------------------------------------------- matching


def images(side: str, rows, ref_uris=None) -> pd.DataFrame:
    """An images table of one run: rows of (ref_id, codec, setting, bytes)."""
    ref_uris = ref_uris or {}
    out = []
    for ref_id, codec, setting, nbytes in rows:
        dist_id = f"{side}-{ref_id}-{codec}-{setting}"
        out.append(
            {
                "ref_id": ref_id,
                "ref_uri": ref_uris.get(ref_id, f"/data/refs/{ref_id}.png"),
                "dist_id": dist_id,
                "dist_uri": f"/data/{side}/{dist_id}.png",
                "codec": codec,
                "codec_version": f"{side}-build",
                "setting": setting,
                "bytes": nbytes,
            }
        )
    return pd.DataFrame(out)


def test_match_reports_what_is_only_in_one_run():
    base = images(
        "b",
        [
            ("r1", "jpeg", "q=40", 10),
            ("r1", "jpeg", "q=80", 20),
            ("r2", "jpeg", "q=40", 11),
            ("r2", "webp", "q=50", 12),
        ],
    )
    cand = images("c", [("r1", "jpeg", "q=40", 10), ("r2", "jpeg", "q=40", 13), ("r2", "avif", "q=30", 9)])
    m = rg.match_runs(base, cand)
    assert sorted(map(tuple, m.matched[rg.KEY].to_numpy())) == [
        ("r1", "jpeg", "q=40"),
        ("r2", "jpeg", "q=40"),
    ]
    assert sorted(map(tuple, m.only_baseline[rg.KEY].to_numpy())) == [
        ("r1", "jpeg", "q=80"),
        ("r2", "webp", "q=50"),
    ]
    assert list(map(tuple, m.only_candidate[rg.KEY].to_numpy())) == [("r2", "avif", "q=30")]
    assert m.only_baseline["dist_id"].str.startswith("b-").all()
    row = m.matched.set_index("ref_id").loc["r2"]
    assert (row["baseline_bytes"], row["candidate_bytes"]) == (11, 13)
    assert row["candidate_codec_version"] == "c-build"
    assert m.counts() == {
        "matched": 2,
        "references": 2,
        "only_baseline": 2,
        "only_candidate": 1,
        "ambiguous": 0,
        "ref_mismatch": 0,
    }


def test_ambiguous_keys_and_missing_settings():
    base = images("b", [("r1", "jpeg", None, 10), ("r1", "webp", "q=1", 5)])
    cand = images("c", [("r1", "jpeg", None, 12), ("r1", "webp", "q=1", 5), ("r1", "webp", "q=1", 6)])
    cand.loc[2, "dist_id"] = "c-dup"
    m = rg.match_runs(base, cand)
    assert list(map(tuple, m.matched[rg.KEY].to_numpy())) == [("r1", "jpeg", "")]
    assert m.ambiguous.to_dict("records") == [
        {"side": "candidate", "ref_id": "r1", "codec": "webp", "setting": "q=1", "n": 2}
    ]
    assert m.only_baseline.empty and m.only_candidate.empty


def test_a_reference_that_differs_is_reported_and_left_out():
    base = images("b", [("r1", "jpeg", "q=1", 1), ("r2", "jpeg", "q=1", 1)])
    cand = images("c", [("r1", "jpeg", "q=1", 1), ("r2", "jpeg", "q=1", 1)], ref_uris={"r1": "/copy/r1.png"})
    m = rg.match_runs(base, cand)
    assert list(m.matched["ref_id"]) == ["r2"]
    assert m.ref_mismatch.to_dict("records") == [
        {
            "ref_id": "r1",
            "baseline_ref_uri": "/data/refs/r1.png",
            "candidate_ref_uri": "/copy/r1.png",
            "images": 2,
        }
    ]
    assert m.only_baseline.empty and m.only_candidate.empty
    # the caller's content check vouches for the copy
    asked = []
    same = rg.match_runs(base, cand, same_reference=lambda a, b: asked.append((a, b)) or True)
    assert sorted(same.matched["ref_id"]) == ["r1", "r2"] and same.ref_mismatch.empty
    assert asked == [("/data/refs/r1.png", "/copy/r1.png")]


def test_match_needs_the_key_columns():
    with pytest.raises(ValueError, match="candidate images lack column"):
        rg.match_runs(images("b", [("r1", "jpeg", "q", 1)]), pd.DataFrame({"ref_id": ["r1"]}))


# ---------------------------------------------------------------------------------------------- groups


def test_groups_pair_each_candidate_with_its_baseline_candidate_first():
    base = images("b", [("r1", "jpeg", "q=40", 10), ("r1", "webp", "q=50", 20), ("r2", "jpeg", "q=40", 30)])
    cand = images("c", [("r1", "jpeg", "q=40", 11), ("r1", "webp", "q=50", 21), ("r2", "jpeg", "q=40", 31)])
    groups = rg.build_groups(rg.match_runs(base, cand))
    assert [g["ref_id"] for g in groups] == ["r1", "r2"]
    g = groups[0]
    ids = [d["dist_id"] for d in g["dists"]]
    assert ids == [
        "candidate:c-r1-jpeg-q=40",
        "baseline:b-r1-jpeg-q=40",
        "candidate:c-r1-webp-q=50",
        "baseline:b-r1-webp-q=50",
    ]
    assert g["pairs"] == [
        ["candidate:c-r1-jpeg-q=40", "baseline:b-r1-jpeg-q=40"],
        ["candidate:c-r1-webp-q=50", "baseline:b-r1-webp-q=50"],
    ]
    assert g["ref_uri"] == "/data/refs/r1.png" and g["key"].startswith("g-")
    d = g["dists"][0]
    assert (d["bytes"], d["codec_version"], d["extras"]) == (
        11,
        "c-build",
        {"side": "candidate", "source_dist_id": "c-r1-jpeg-q=40"},
    )
    assert json.loads(json.dumps(groups)) == groups  # travels to Ray workers as JSON
    # explicit pairs resolve to exactly the matched pairs; a strategy over the listing keeps candidate-first order
    assert pairing.pairs_by_id(ids, g["pairs"]) == [(0, 1), (2, 3)]
    items = [pairing.Item(codec=d["codec"], bpp=None) for d in g["dists"]]
    assert {(0, 1), (2, 3)} <= set(pairing.pairs(items, "all"))


# ---------------------------------------------------------------------------------------------- scoring stand-in


def fake_scoring(groups: list[dict], metrics: dict, p_of) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The images and pairs tables the scoring path would write: ``metrics[dist_id]`` = (psnr, ms_ssim)."""
    img_rows, pair_rows = [], []
    for g in groups:
        for d in g["dists"]:
            psnr, ms = metrics[d["dist_id"]]
            img_rows.append(
                {
                    "ref_id": g["ref_id"],
                    "dist_id": d["dist_id"],
                    "bpp": d["bytes"] * 8 / 10_000,
                    "psnr": psnr,
                    "ms_ssim": ms,
                }
            )
        for a, b in g["pairs"]:
            pair_rows.append({"ref_id": g["ref_id"], "a_id": a, "b_id": b, "p_a": p_of(g["ref_id"], a, b)})
    return pd.DataFrame(img_rows), pd.DataFrame(pair_rows, columns=["ref_id", "a_id", "b_id", "p_a"])


def scenario(
    codecs: dict[str, list[str]],
    *,
    n_refs: int = 12,
    quality=lambda codec, setting, k: (30.0 + 3 * k, 0.95 + 0.01 * k),
    rate=lambda codec, setting, k: 1000 * 2**k,
    cand_quality=None,
    cand_rate=None,
    p=lambda ref, codec, setting: 0.5,
    th: rg.Thresholds | None = None,
    seed: int = 0,
    drop=(),
) -> rg.Report:
    """Two synthetic runs and their verdict; ``k`` is the setting's index, candidate functions default to equal."""
    rng = np.random.default_rng(seed)
    cand_quality = cand_quality or quality
    cand_rate = cand_rate or rate
    base_rows, cand_rows, metrics, noise = [], [], {}, {}
    for r in range(n_refs):
        ref = f"r{r:02d}"
        for codec, settings in codecs.items():
            for k, setting in enumerate(settings):
                base_rows.append((ref, codec, setting, int(rate(codec, setting, k))))
                if (ref, codec, setting) not in drop:
                    cand_rows.append((ref, codec, setting, int(cand_rate(codec, setting, k))))
                noise[(ref, codec, setting)] = rng.normal(0, 0.02)
    base, cand = images("b", base_rows), images("c", cand_rows)
    for row in base.itertuples():
        k = codecs[row.codec].index(row.setting)
        q, ms = quality(row.codec, row.setting, k)
        metrics["baseline:" + row.dist_id] = (q + noise[(row.ref_id, row.codec, row.setting)], ms)
    for row in cand.itertuples():
        k = codecs[row.codec].index(row.setting)
        q, ms = cand_quality(row.codec, row.setting, k)
        metrics["candidate:" + row.dist_id] = (q + noise[(row.ref_id, row.codec, row.setting)], ms)
    matching = rg.match_runs(base, cand)
    groups = rg.build_groups(matching)

    def p_of(ref, a, b):
        codec, setting = a.split("-", 3)[2], a.split("-", 3)[3]
        return p(ref, codec, setting)

    imgs, pairs = fake_scoring(groups, metrics, p_of)
    scored, unscored = rg.triplets(imgs, pairs, matching)
    context = {
        "baseline": {"uri": "s3://b/base", "run_id": "run-b"},
        "candidate": {"uri": "s3://b/cand"},
        "model": "prfnet-tiny",
        "trained_model": False,
    }
    return rg.decide(scored, matching, unscored, th or rg.Thresholds(n_boot=500), context=context)


SETTINGS = {"jpeg": ["q=20", "q=40", "q=60", "q=80"], "webp": ["q=30", "q=70"]}


def test_identical_runs_pass_with_p_exactly_half():
    rep = scenario(SETTINGS)
    assert rep.verdict == "pass" and rep.exit_code == 0 and not rep.regressions()
    assert (rep.codecs["p_low"] == 0.5).all() and (rep.codecs["p_high"] == 0.5).all()
    assert (rep.settings["d_psnr"] == 0).all() and (rep.settings["rate_change"] == 0).all()
    assert rep.codecs.set_index("codec").loc["jpeg", "bd_rate"] == pytest.approx(0.0, abs=1e-9)
    assert not any(rep.codecs["warnings"].map(len)) and "no regression" in rep.to_markdown()


def test_psnr_drop_names_the_codec_with_numbers():
    rep = scenario(
        SETTINGS, cand_quality=lambda c, s, k: (30.0 + 3 * k - (2.0 if c == "jpeg" else 0), 0.95 + 0.01 * k)
    )
    assert rep.verdict == "regression" and rep.exit_code == 1
    regs = rep.regressions()
    assert {r["codec"] for r in regs} == {"jpeg"}
    assert {r["setting"] for r in regs} == {rg.ALL_SETTINGS, *SETTINGS["jpeg"]}
    assert all(any(x.startswith("psnr: PSNR -2.0") for x in r["reasons"]) for r in regs)
    webp = rep.codecs.set_index("codec").loc["webp"]
    assert not webp["regression"] and webp["d_psnr"] == 0
    md = rep.to_markdown()
    assert "# prfeval regress: REGRESSION" in md and "`jpeg` (all): psnr: PSNR -2.00" in md
    doc = json.loads(rg.to_json(rep))
    assert doc["verdict"] == "regression" and doc["exit_code"] == 1
    assert {r["codec"] for r in doc["regressions"]} == {"jpeg"}
    assert doc["counts"]["matched"] == doc["counts"]["scored"] == 12 * 6


def test_more_bits_at_equal_quality_is_a_rate_regression():
    rep = scenario(SETTINGS, cand_rate=lambda c, s, k: 1000 * 2**k * (1.10 if c == "webp" else 1.0))
    webp = rep.codecs.set_index("codec").loc["webp"]
    assert webp["rate_change"] == pytest.approx(0.10, abs=0.002)
    assert webp["regression"] and webp["reasons"][0].startswith("rate: bpp +10.0%")
    assert {r["codec"] for r in rep.regressions()} == {"webp"}


def test_more_bits_with_better_quality_is_not_a_rate_regression():
    rep = scenario(
        SETTINGS,
        cand_rate=lambda c, s, k: 1000 * 2**k * 1.10,
        cand_quality=lambda c, s, k: (30.0 + 3 * k + 1.0, 0.95 + 0.01 * k),
    )
    assert not any(r.startswith("rate:") for rs in rep.settings["reasons"] for r in rs)


def test_bd_rate_sees_a_worse_curve_but_not_a_shift_along_it():
    # candidate needs 15% more bits for the same PSNR at every setting: BD-rate +15%
    worse = scenario({"jpeg": SETTINGS["jpeg"]}, cand_rate=lambda c, s, k: 1000 * 2**k * 1.15)
    jpeg = worse.codecs.iloc[0]
    assert jpeg["bd_rate"] == pytest.approx(15.0, abs=0.5) and jpeg["bd_rate_refs"] == 12
    assert any(r.startswith("bd_rate: BD-rate (PSNR) +15.0%") for r in jpeg["reasons"])
    # the same curve, each label one step lower: quality dropped at the label (psnr fires), efficiency did not
    shifted = scenario(
        {"jpeg": SETTINGS["jpeg"]},
        quality=lambda c, s, k: (30.0 + 3 * k, 0.95),
        rate=lambda c, s, k: 1000 * 2**k,
        cand_quality=lambda c, s, k: (30.0 + 3 * (k - 0.5), 0.95),
        cand_rate=lambda c, s, k: 1000 * 2 ** (k - 0.5),
    )
    row = shifted.codecs.iloc[0]
    assert abs(row["bd_rate"]) < 1.0 and not any(r.startswith("bd_rate") for r in row["reasons"])
    assert any(r.startswith("psnr:") for r in row["reasons"])
    assert row["rate_change"] == pytest.approx(2**-0.5 - 1, abs=1e-3)  # bytes are whole numbers
    # too few settings for a curve: a reason instead of a number
    assert scenario({"webp": SETTINGS["webp"]}).codecs.iloc[0]["bd_rate_reason"] == "fewer than 4 settings"


def test_prfnet_criterion_and_the_gate():
    def p(ref, codec, setting):
        return 0.3 if codec == "jpeg" else 0.5

    rep = scenario(SETTINGS, p=p)
    jpeg = rep.codecs.set_index("codec").loc["jpeg"]
    assert jpeg["p"] == pytest.approx(0.3) and jpeg["p_high"] < 0.48
    assert jpeg["reasons"] == ["prfnet: P(candidate better) 0.300 [0.300, 0.300] < 0.480"]
    ungated = scenario(SETTINGS, p=p, th=rg.Thresholds(n_boot=500, gate=("psnr", "rate")))
    assert ungated.verdict == "pass"
    assert ungated.codecs.set_index("codec").loc["jpeg", "warnings"][0].startswith("prfnet:")
    assert "## Warnings (not gated)" in ungated.to_markdown()
    # within the margin: P = 0.49 is not a regression at margin 0.02
    assert scenario(SETTINGS, p=lambda *a: 0.49).verdict == "pass"


def test_missing_images_are_reported_and_fail_only_on_request():
    drop = {(f"r{r:02d}", "jpeg", s) for r in range(0, 12, 2) for s in SETTINGS["jpeg"]}
    rep = scenario(SETTINGS, drop=drop)
    assert rep.verdict == "pass"
    assert len(rep.matching.only_baseline) == len(drop) == 24
    md = rep.to_markdown(max_listed=5)
    assert "**Only in the baseline (missing from the candidate)** (24):" in md and "and 19 more" in md
    strict = scenario(SETTINGS, drop=drop, th=rg.Thresholds(n_boot=500, fail_on_missing=True))
    assert strict.verdict == "regression"
    assert strict.regressions()[-1]["reasons"] == [
        "missing: 24 image(s) of the baseline are not in the candidate"
    ]


def test_triplets_reorient_reversed_pairs_and_report_unscored():
    base = images("b", [("r1", "jpeg", "q=1", 100), ("r1", "jpeg", "q=2", 200), ("r1", "jpeg", "q=3", 300)])
    cand = images("c", [("r1", "jpeg", "q=1", 110), ("r1", "jpeg", "q=2", 200), ("r1", "jpeg", "q=3", 300)])
    m = rg.match_runs(base, cand)
    imgs = pd.DataFrame(
        [
            {"dist_id": "candidate:c-r1-jpeg-q=1", "bpp": 1.1, "psnr": np.inf, "ms_ssim": 1.0},
            {"dist_id": "baseline:b-r1-jpeg-q=1", "bpp": 1.0, "psnr": 40.0, "ms_ssim": 0.99},
            {"dist_id": "candidate:c-r1-jpeg-q=2", "bpp": 2.0, "psnr": 30.0, "ms_ssim": None},
            {"dist_id": "baseline:b-r1-jpeg-q=2", "bpp": 2.0, "psnr": 31.0, "ms_ssim": None},
            {"dist_id": "baseline:b-r1-jpeg-q=3", "bpp": 3.0, "psnr": 31.0, "ms_ssim": None},
        ]
    )
    pairs = pd.DataFrame(
        {
            "a_id": ["candidate:c-r1-jpeg-q=1", "baseline:b-r1-jpeg-q=2", "candidate:c-r1-jpeg-q=1"],
            "b_id": ["baseline:b-r1-jpeg-q=1", "candidate:c-r1-jpeg-q=2", "candidate:c-r1-jpeg-q=2"],
            "p_a": [0.7, 0.8, 0.1],
        }
    )
    scored, unscored = rg.triplets(imgs, pairs, m)
    s = scored.set_index("setting")
    assert s.loc["q=1", "p"] == 0.7 and s.loc["q=2", "p"] == pytest.approx(0.2)
    assert s.loc["q=1", "d_psnr"] == pytest.approx(rg.PSNR_CAP - 40.0)
    assert s.loc["q=1", "log_rate"] == pytest.approx(math.log(1.1))
    assert math.isnan(s.loc["q=2", "d_ms_ssim"])
    assert list(unscored["setting"]) == ["q=3"]


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="alpha"):
        rg.Thresholds(alpha=0)
    with pytest.raises(ValueError, match="margin"):
        rg.Thresholds(margin=0.6)
    with pytest.raises(ValueError, match="unknown criteria"):
        rg.Thresholds(gate=("psnr", "vmaf"))
    with pytest.raises(ValueError, match="rate_margin"):
        rg.Thresholds(rate_margin=-0.1)
    assert rg.Thresholds(margin=0.05).p_threshold == pytest.approx(0.45)
