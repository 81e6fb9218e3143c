"""`regress` criteria from metric metadata: every further metric is judged in its own direction and margin."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import regress as rg

SETTINGS = {"jpeg": ["q=20", "q=40", "q=60", "q=80"], "webp": ["q=30", "q=70"]}
N_REFS = 10
ALL = (*rg.Thresholds().gate, "butteraugli", "ssimulacra2")  # what `prfeval regress` gates by default


def side_images(side: str) -> pd.DataFrame:
    rows = []
    for r in range(N_REFS):
        for codec, settings in SETTINGS.items():
            for k, setting in enumerate(settings):
                dist_id = f"{side}-r{r}-{codec}-{setting}"
                rows.append(
                    {
                        "ref_id": f"r{r}",
                        "ref_uri": f"/data/refs/r{r}.png",
                        "dist_id": dist_id,
                        "dist_uri": f"/data/{side}/{dist_id}.png",
                        "codec": codec,
                        "codec_version": side,
                        "setting": setting,
                        "bytes": 1000 * 2**k,
                    }
                )
    return pd.DataFrame(rows)


def report(cand_metric, th: rg.Thresholds | None = None, metrics=("butteraugli", "ssimulacra2")) -> rg.Report:
    """Two synthetic runs whose PSNR, MS-SSIM and rate are equal; ``cand_metric(codec, name, value)`` changes the
    candidate's further metrics."""
    rng = np.random.default_rng(0)
    matching = rg.match_runs(side_images("b"), side_images("c"))
    groups = rg.build_groups(matching)
    img_rows, pair_rows = [], []
    for g in groups:
        for d in g["dists"]:
            codec, setting = d["codec"], d["setting"]
            k = SETTINGS[codec].index(setting)
            noise = rng.normal(0, 0.01)
            values = {"butteraugli": 3.0 - 0.5 * k + noise, "ssimulacra2": 50 + 10 * k + noise}
            if d["dist_id"].startswith("candidate:"):
                values = {m: cand_metric(codec, m, v) for m, v in values.items()}
            img_rows.append(
                {
                    "ref_id": g["ref_id"],
                    "dist_id": d["dist_id"],
                    "bpp": d["bytes"] * 8 / 10_000,
                    "psnr": 30.0 + 3 * k,
                    "ms_ssim": 0.95,
                    **values,
                }
            )
        pair_rows += [{"ref_id": g["ref_id"], "a_id": a, "b_id": b, "p_a": 0.5} for a, b in g["pairs"]]
    scored, unscored = rg.triplets(pd.DataFrame(img_rows), pd.DataFrame(pair_rows), matching, metrics=metrics)
    return rg.decide(scored, matching, unscored, th or rg.Thresholds(n_boot=300, gate=ALL), metrics=metrics)


def test_a_higher_butteraugli_is_a_regression_lower_is_better():
    worse = report(lambda c, m, v: v + 0.5 if (c == "webp" and m == "butteraugli") else v)
    webp = worse.codecs.set_index("codec").loc["webp"]
    assert webp["d_butteraugli"] == pytest.approx(0.5, abs=0.02) and webp["d_butteraugli_low"] > 0.05
    assert any(r.startswith("butteraugli: Butteraugli +0.5") for r in webp["reasons"])
    assert "higher is worse" in next(r for r in webp["reasons"] if r.startswith("butteraugli"))
    assert {r["codec"] for r in worse.regressions()} == {"webp"}
    # the same change the other way round is an improvement, never a regression
    better = report(lambda c, m, v: v - 0.5 if m == "butteraugli" else v)
    assert better.verdict == "pass" and not any(better.codecs["warnings"].map(len))


def test_a_lower_ssimulacra2_is_a_regression_higher_is_better():
    rep = report(lambda c, m, v: v - 3.0 if (c == "jpeg" and m == "ssimulacra2") else v)
    jpeg = rep.codecs.set_index("codec").loc["jpeg"]
    assert jpeg["d_ssimulacra2_high"] < -0.5
    assert any(r.startswith("ssimulacra2: SSIMULACRA2 -3") for r in jpeg["reasons"])
    assert {r["codec"] for r in rep.regressions()} == {"jpeg"}


def test_margins_from_metadata_overridable_and_the_gate():
    change = lambda c, m, v: v + 0.03 if m == "butteraugli" else v  # noqa: E731
    # 0.03 is within Butteraugli's own margin (0.05)
    assert report(change).verdict == "pass"
    tight = rg.Thresholds(n_boot=300, metric_margins=(("butteraugli", 0.01),), gate=ALL)
    assert report(change, tight).verdict == "regression"
    # not gated: evaluated and reported as a warning, the verdict passes
    ungated = rg.Thresholds(n_boot=300, metric_margins=(("butteraugli", 0.01),), gate=("psnr",))
    rep = report(change, ungated)
    assert rep.verdict == "pass"
    assert any(w.startswith("butteraugli:") for w in rep.codecs["warnings"].iloc[0])
    md = rep.to_markdown()
    assert "`butteraugli` (lower is better, margin 0.01, warning only)" in md
    assert "ΔButteraugli (lower is better)" in md
    doc = json.loads(rg.to_json(rep))
    assert doc["criteria"]["butteraugli"]["higher_is_better"] is False
    assert doc["criteria"]["butteraugli"]["gated"] is False
    assert doc["criteria"]["ssimulacra2"]["margin"] == 0.5
    assert doc["thresholds"]["metric_margins"] == {"butteraugli": 0.01, "ssimulacra2": 0.5}
    gated = rg.Thresholds(n_boot=300, metric_margins=(("butteraugli", 0.01),), gate=("butteraugli",))
    assert report(change, gated).verdict == "regression"


def test_which_metrics_are_criteria_and_validation():
    assert rg.metric_criteria(("psnr", "psnr_y", "ms_ssim")) == ()  # a default run is judged as before
    assert rg.metric_criteria(("psnr", "psnr_y", "ms_ssim"), gate=("psnr_y",)) == ("psnr_y",)
    assert rg.metric_criteria(("psnr", "ms_ssim", "butteraugli", "ciede2000")) == ("butteraugli", "ciede2000")
    assert "ciede2000" in rg.criteria_for(("ciede2000",))
    assert "lower is better" in rg.criteria_for(("ciede2000",))["ciede2000"].description
    rg.Thresholds(gate=("butteraugli",))  # a metric's name is a criterion
    with pytest.raises(ValueError, match="unknown criteria"):
        rg.Thresholds(gate=("vmaf",))
    with pytest.raises(KeyError, match="did you mean"):
        rg.Thresholds(metric_margins=(("butteraugl", 0.1),))
    with pytest.raises(ValueError, match="margin of butteraugli"):
        rg.Thresholds(metric_margins=(("butteraugli", -1.0),))


def test_without_further_metrics_rows_and_json_have_no_new_fields():
    rep = report(lambda c, m, v: v, metrics=())
    assert not [c for c in rep.codecs.columns if "butteraugli" in c or "ssimulacra2" in c]
    doc = json.loads(rg.to_json(rep))
    assert set(doc["criteria"]) == set(rg.CRITERIA) and "metric_margins" not in doc["thresholds"]
    assert "metric criteria" not in rep.to_markdown()
