"""The pure part of `regress`: run matching, triplet groups, statistics, criteria, verdict, regress.md/json."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from pipeline import regress as rg
from pipeline.scoring import pairing

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


# ---------------------------------------------------------------------------------------------- regress.md


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_names_from_the_data_are_escaped_in_regress_md():
    evil_codec, evil_setting = "x|y<script>", "q*1`_[2]\nz"
    settings = {evil_codec: [f"{evil_setting}{k}" for k in range(4)], "jpeg": ["q=20", "q=40"]}
    rep = scenario(
        settings,
        cand_quality=lambda codec, setting, k: (28.0 + 3 * k, 0.94 + 0.01 * k),
        drop={("r00", evil_codec, f"{evil_setting}0")},
    )
    md = rep.to_markdown()
    assert rep.regression and "<script" not in md and evil_codec not in md
    assert r"x\|y&lt;script&gt;" in md and r"q\*1\`\_\[2\] z0" in md
    assert "`jpeg` (all): psnr: PSNR" in md  # names that need no escaping keep their code span
    lines = md.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("|") and k + 1 < len(lines) and lines[k + 1].startswith("|-"):
            width = _unescaped_pipes(line)
            rows = []
            for r in lines[k + 2 :]:
                if not r.startswith("|"):
                    break
                rows.append(r)
            assert rows and all(_unescaped_pipes(r) == width for r in rows)
            assert any(r"x\|y&lt;script&gt;" in r for r in rows)
    bullets = [line for line in lines if line.startswith("- ") and "x" in line and "script" in line]
    assert bullets and all(r"x\|y&lt;script&gt;" in b for b in bullets)
    doc = json.loads(rg.to_json(rep))
    assert evil_codec in {r["codec"] for r in doc["codecs"]}  # the JSON keeps the names as they are
