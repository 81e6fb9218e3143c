"""`prfeval regress` end to end: real evaluate runs of real codec outputs, a real local Ray, a real S3 server.

Candidates are made worse on purpose under the same setting labels (JPEG encoded at a quarter of the labelled
quality, WebP outputs blurred, bitstreams reported larger). Until a trained checkpoint ships, prfnet-tiny's untrained
weights give P ≈ 0.5 for every pair, so these tests assert what the classic criteria can justify (PSNR, MS-SSIM,
rate); the PRFNet criterion is tested against the packaged checkpoint when there is one.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from jobs import evaluate, query, regress
from model.bundled import default_checkpoint
from pipeline.io import storage
from pipeline.runs import registry as runs
from pipeline.scoring import results

pytestmark = pytest.mark.slow


def run_eval(manifest: str, out: str, *extra: str) -> int:
    return evaluate.main(["--manifest", manifest, "--output", out, "--no-progress", *extra])


def run_regress(*args: str) -> int:
    return regress.main([*args, "--no-progress"])


def load(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(storage.read_bytes(uri))).convert("RGB"))


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def lower_quality(ref: np.ndarray, dist: np.ndarray, row) -> tuple[np.ndarray, int]:
    """A worse encoder build: JPEG at a quarter of the quality its setting label says."""
    q = int(str(row.setting).split("=")[1])
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="JPEG", quality=max(2, q // 4))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), len(buf.getvalue())


def blurred(ref: np.ndarray, dist: np.ndarray, row) -> tuple[np.ndarray, int]:
    """A worse decoder/post-filter: the same bitstream size, the decoded output blurred."""
    return np.asarray(Image.fromarray(dist).filter(ImageFilter.GaussianBlur(2))), int(row.bytes)


def variant(manifest_uri: str, df: pd.DataFrame, name: str, codec: str, transform) -> str:
    """A candidate manifest next to the baseline's: same references and labels, ``codec``'s outputs transformed."""
    base = storage.parent(manifest_uri)
    rows = df.copy()
    for i, row in rows.iterrows():
        if row.codec != codec:
            continue
        rgb, nbytes = transform(
            load(storage.join(base, row.ref_uri)), load(storage.join(base, row.dist_uri)), row
        )
        rows.at[i, "bytes"] = nbytes
        if rgb is not None:
            rows.at[i, "dist_uri"] = f"{name}/{row.dist_id}.png"
            storage.write_bytes(storage.join(base, name, f"{row.dist_id}.png"), png(rgb))
    uri = storage.join(base, f"{name}.csv")
    storage.write_text(uri, rows.to_csv(index=False))
    return uri


def report(out: str) -> tuple[str, dict]:
    return storage.read_text(storage.join(out, "regress.md")), json.loads(
        storage.read_text(storage.join(out, "regress.json"))
    )


def test_identical_runs_pass_resume_and_are_recorded(ray_local, tmp_path, local_manifest, capsys):
    manifest_uri, df = local_manifest
    reg = str(tmp_path / "registry")
    base, cand = str(tmp_path / "nightly-1"), str(tmp_path / "nightly-2")
    assert run_eval(manifest_uri, base, "--registry", reg) == 0
    assert run_eval(manifest_uri, cand, "--registry", reg) == 0
    assert run_regress("--baseline", base, "--candidate", cand, "--registry", reg) == 0
    # the default output: inside the candidate, keyed by the baseline's run id
    out = storage.join(cand, "regress", f"vs-{results.read_run(base)['run_id']}")
    md, doc = report(out)
    assert md.startswith("# prfeval regress: no regression") and "REGRESSION" not in md
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0 and doc["regressions"] == []
    assert doc["counts"]["matched"] == doc["counts"]["scored"] == len(df)
    assert doc["counts"]["only_baseline"] == doc["counts"]["only_candidate"] == 0
    for row in doc["settings"]:  # identical outputs: P exactly 1/2 (antisymmetric model), no classic change
        assert row["p"] == pytest.approx(0.5, abs=1e-6) and row["p_low"] <= 0.5 <= row["p_high"]
        assert row["d_psnr"] == 0 and row["rate_change"] == 0
    assert {r["codec"] for r in doc["codecs"]} == {"jpeg", "webp"}
    assert "no regression" in capsys.readouterr().out
    # the triplet results land in the output like evaluate's
    images = results.read_table(out, "images")
    assert set(images["side"]) == {"baseline", "candidate"} and len(images) == 2 * len(df)
    assert images["dist_id"].str.match(r"^(baseline|candidate):").all()
    run = results.read_run(out)
    assert run["kind"] == "regress" and run["verdict"] == "pass" and run["status"] == "finished"
    # the registry lists both evaluate runs and the gate
    table = runs.read(reg)
    assert table["kind"].tolist() == ["evaluate", "evaluate", "regress"]
    gate = table.iloc[-1]
    assert gate["verdict"] == "pass" and gate["candidate_uri"] == cand
    assert gate["baseline_run_id"] == results.read_run(base)["run_id"] and gate["counts_matched"] == len(df)
    # a rerun resumes: nothing is scored or written again
    pair_files = storage.listdir(storage.join(out, "pairs"))
    mtimes = [storage.filesystem(f)[0].modified(f) for f in pair_files]
    assert run_regress("--baseline", base, "--candidate", cand, "--registry", reg) == 0
    assert [storage.filesystem(f)[0].modified(f) for f in pair_files] == mtimes
    assert results.read_run(out)["run_id"] == run["run_id"] and len(runs.read(reg)) == 3
    # another comparison into the same output is refused
    assert run_regress("--baseline", cand, "--candidate", base, "--output", out) == 2
    assert "holds another comparison" in capsys.readouterr().err
    # "the last good baseline" comes from the registry, by regress and by query
    assert (
        run_regress(
            "--baseline",
            "last-good",
            "--candidate",
            cand,
            "--registry",
            reg,
            "--output",
            str(tmp_path / "regress-2"),
        )
        == 0
    )
    assert f"last good = {cand}" in capsys.readouterr().out
    assert query.main(["--registry", reg, "--example", "last-good", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["baseline_uri"] == cand


def test_a_worse_jpeg_build_is_a_regression_naming_jpeg(ray_local, tmp_path, local_manifest, capsys):
    manifest_uri, df = local_manifest
    worse = variant(manifest_uri, df, "jpeg-worse", "jpeg", lower_quality)
    base, cand, out = str(tmp_path / "base"), str(tmp_path / "cand"), str(tmp_path / "gate")
    assert run_eval(manifest_uri, base) == 0
    assert run_eval(worse, cand) == 0
    assert run_regress("--baseline", base, "--candidate", cand, "--output", out) == 1
    md, doc = report(out)
    assert md.startswith("# prfeval regress: REGRESSION")
    (jpeg_line,) = [line for line in md.splitlines() if line.startswith("- `jpeg` (all): ")]
    assert "psnr: PSNR -" in jpeg_line  # named, with the number and its interval
    from model.bundled import default_checkpoint

    if default_checkpoint("prfnet-tiny"):  # a trained PRFNet sees the drop too
        assert "prfnet: P(candidate better)" in jpeg_line
    assert doc["verdict"] == "regression" and doc["exit_code"] == 1
    assert {r["codec"] for r in doc["regressions"]} == {"jpeg"}
    settings = pd.DataFrame(doc["settings"])
    jpeg, webp = settings[settings.codec == "jpeg"], settings[settings.codec == "webp"]
    assert set(jpeg["setting"]) == {"q=10", "q=40", "q=85"} and jpeg["regression"].all()
    assert (jpeg["d_psnr_high"] < -1.0).all()  # a quarter of the quality costs well over 1 dB
    assert (jpeg["rate_change"] < 0).all()  # and saves bits: reported next to the drop
    assert all(any(r.startswith("psnr: PSNR -") for r in rs) for rs in jpeg["reasons"])
    assert not webp["regression"].any() and (webp["d_psnr"] == 0).all()
    # the numbers agree with the evaluate runs' own measurements of the same files
    b_img = results.read_table(base, "images").set_index(["ref_id", "setting", "codec"])["psnr"]
    c_img = results.read_table(cand, "images").set_index(["ref_id", "setting", "codec"])["psnr"]
    want = (c_img - b_img).xs("jpeg", level="codec").groupby(level="setting").mean()
    assert jpeg.set_index("setting")["d_psnr"].to_dict() == pytest.approx(want.to_dict(), abs=1e-9)
    if default_checkpoint("prfnet-tiny") is None:
        assert "untrained weights" in md
    assert "REGRESSION" in capsys.readouterr().out


def test_blurred_outputs_regress_that_codec_only(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    blurry = variant(manifest_uri, df, "webp-blurred", "webp", blurred)
    out = str(tmp_path / "gate")
    assert run_regress("--baseline", manifest_uri, "--candidate", blurry, "--output", out) == 1
    _, doc = report(out)
    assert {r["codec"] for r in doc["regressions"]} == {"webp"}
    webp = next(r for r in doc["codecs"] if r["codec"] == "webp")
    assert webp["rate_change"] == 0 and webp["d_psnr_high"] < -1.0
    assert any(r.startswith("psnr:") for r in webp["reasons"])
    assert doc["baseline"]["kind"] == doc["candidate"]["kind"] == "manifest"


def test_more_bits_at_equal_quality_is_a_rate_regression(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    bigger = variant(
        manifest_uri, df, "webp-bigger", "webp", lambda ref, dist, row: (None, int(row.bytes * 1.25))
    )
    out = str(tmp_path / "gate")
    assert run_regress("--baseline", manifest_uri, "--candidate", bigger, "--output", out) == 1
    md, doc = report(out)
    assert {r["codec"] for r in doc["regressions"]} == {"webp"}
    webp = next(r for r in doc["codecs"] if r["codec"] == "webp")
    assert webp["rate_change"] == pytest.approx(0.25, abs=0.01) and webp["d_psnr"] == 0
    assert webp["reasons"][0].startswith("rate: bpp +2")
    assert "at equal quality" in md


def test_a_candidate_missing_half_the_images_is_reported(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    half = storage.join(storage.parent(manifest_uri), "half.csv")
    storage.write_text(half, df.iloc[::2].to_csv(index=False))
    out = str(tmp_path / "gate")
    assert run_regress("--baseline", manifest_uri, "--candidate", half, "--output", out) == 0
    md, doc = report(out)
    missing = df.iloc[1::2]
    assert doc["counts"]["matched"] == len(df) - len(missing)
    assert doc["counts"]["only_baseline"] == len(missing)
    listed = {(r["ref_id"], r["codec"], r["setting"]) for r in doc["coverage"]["only_baseline"]}
    assert listed == set(zip(missing.ref_id, missing.codec, missing.setting, strict=True))
    assert f"**Only in the baseline (missing from the candidate)** ({len(missing)}):" in md
    # on request, missing images fail the gate (the comparison itself is resumed, not scored again)
    run_id = results.read_run(out)["run_id"]
    assert (
        run_regress("--baseline", manifest_uri, "--candidate", half, "--output", out, "--fail-on-missing")
        == 1
    )
    assert results.read_run(out)["run_id"] == run_id
    assert f"missing: {len(missing)} image(s)" in report(out)[0]


def test_regress_on_s3_writes_no_credentials(ray_local, s3, s3_manifest):
    manifest_uri, df = s3_manifest
    worse = variant(manifest_uri, df, "jpeg-worse", "jpeg", lower_quality)
    out = s3.uri("gate")
    assert (
        run_regress(
            "--baseline",
            manifest_uri,
            "--candidate",
            worse,
            "--output",
            out,
            "--registry",
            s3.uri("registry"),
        )
        == 1
    )
    md, doc = report(out)
    assert {r["codec"] for r in doc["regressions"]} == {"jpeg"}
    assert len(results.read_table(out, "images")) == 2 * len(df)
    written = [md, json.dumps(doc), storage.read_text(storage.join(out, "run.json"))]
    written.append(runs.read(s3.uri("registry")).to_json())
    secrets = [os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ACCESS_KEY_ID"]]  # set by the s3 fixture
    for text in written:
        assert not any(secret in text for secret in secrets)


def test_usage_errors_and_crashes_exit_2(tmp_path, local_manifest, capsys, monkeypatch):
    manifest_uri, df = local_manifest
    nothing = str(tmp_path / "nothing")
    assert run_regress("--baseline", nothing, "--candidate", manifest_uri) == 2
    assert "neither an evaluate results folder" in capsys.readouterr().err
    other = storage.join(storage.parent(manifest_uri), "other.csv")
    storage.write_text(other, df.assign(codec="avif").to_csv(index=False))
    assert run_regress("--baseline", manifest_uri, "--candidate", other) == 2
    assert "no image in common" in capsys.readouterr().err
    assert run_regress("--baseline", manifest_uri, "--candidate", other, "--alpha", "2") == 2
    assert "alpha must be in (0, 1)" in capsys.readouterr().err
    assert run_regress("--baseline", manifest_uri, "--candidate", other, "--gate", "psnr,vmaf") == 2
    assert "unknown criteria" in capsys.readouterr().err
    monkeypatch.delenv(runs.ENV_VAR, raising=False)
    assert run_regress("--baseline", "last-good", "--candidate", manifest_uri) == 2
    assert "needs a registry" in capsys.readouterr().err

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(regress, "load_side", boom)
    assert (
        run_regress("--baseline", manifest_uri, "--candidate", manifest_uri) == 2
    )  # never 1: not a regression
    err = capsys.readouterr().err
    assert "regress failed: RuntimeError: disk on fire" in err and "Traceback" not in err  # one line


def test_only_the_matched_pairs_are_scored(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    out = str(tmp_path / "gate")
    assert run_regress("--baseline", manifest_uri, "--candidate", manifest_uri, "--output", out) == 0
    pairs = results.read_table(out, "pairs")
    assert len(pairs) == len(df)
    assert (
        pairs["a_id"].str.startswith("candidate:").all() and pairs["b_id"].str.startswith("baseline:").all()
    )


@pytest.mark.skipif(
    default_checkpoint("prfnet-tiny") is None,
    reason="needs a trained prfnet-tiny checkpoint at model/weights/prfnet-tiny.safetensors (untrained weights "
    "give P = 0.5 for every pair, so the PRFNet criterion cannot detect anything yet)",
)
def test_a_trained_prfnet_alone_detects_blur(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    blurry = variant(manifest_uri, df, "webp-blurred", "webp", blurred)
    out = str(tmp_path / "gate")
    assert (
        run_regress("--baseline", manifest_uri, "--candidate", blurry, "--output", out, "--gate", "prfnet")
        == 1
    )
    _, doc = report(out)
    assert {r["codec"] for r in doc["regressions"]} == {"webp"}
    webp = next(r for r in doc["codecs"] if r["codec"] == "webp")
    assert webp["p_high"] < 0.5 - doc["thresholds"]["margin"]
    jpeg = next(r for r in doc["codecs"] if r["codec"] == "jpeg")
    assert jpeg["p"] == pytest.approx(0.5, abs=1e-6)


def test_blurred_outputs_fail_on_butteraugli_lower_is_better(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    blurry = variant(manifest_uri, df, "webp-blurred", "webp", blurred)
    out = str(tmp_path / "gate")
    metrics = ["--metrics", "psnr,ms_ssim,butteraugli", "--metric-margin", "butteraugli=0.2"]
    assert run_regress("--baseline", manifest_uri, "--candidate", blurry, "--output", out, *metrics,
                       "--gate", "butteraugli") == 1  # fmt: skip
    md, doc = report(out)
    assert {r["codec"] for r in doc["regressions"]} == {"webp"}
    webp = next(r for r in doc["codecs"] if r["codec"] == "webp")
    assert webp["d_butteraugli_low"] > 0.2  # Butteraugli rose: lower is better
    assert webp["reasons"] and all(r.startswith("butteraugli:") for r in webp["reasons"])
    assert any(w.startswith("psnr:") for w in webp["warnings"])  # evaluated, not gated
    jpeg = next(r for r in doc["codecs"] if r["codec"] == "jpeg")
    assert jpeg["d_butteraugli"] == 0 and not jpeg["regression"]
    assert doc["criteria"]["butteraugli"] == {
        "description": doc["criteria"]["butteraugli"]["description"],
        "gated": True,
        "unit": "",
        "higher_is_better": False,
        "margin": 0.2,
    }
    assert doc["thresholds"]["gate"] == ["butteraugli"]
    assert (
        "`butteraugli` (lower is better, margin 0.2, gated)" in md and "ΔButteraugli (lower is better)" in md
    )
    images = results.read_table(out, "images")
    assert images["butteraugli"].notna().all()


def test_a_gated_metric_must_be_measured(tmp_path, local_manifest, capsys):
    manifest_uri, _ = local_manifest
    out = str(tmp_path / "gate")
    assert run_regress("--baseline", manifest_uri, "--candidate", manifest_uri, "--output", out,
                       "--gate", "butteraugli") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--gate butteraugli: not measured in this run; add it to --metrics" in err
    assert run_regress("--baseline", manifest_uri, "--candidate", manifest_uri, "--output", out,
                       "--metric-margin", "butteraugl=0.1") == 2  # fmt: skip
    assert "did you mean" in capsys.readouterr().err
    assert run_regress("--baseline", manifest_uri, "--candidate", manifest_uri, "--output", out,
                       "--metric-margin", "butteraugli") == 2  # fmt: skip
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_a_metric_can_be_the_judge_of_the_triplets(ray_local, tmp_path, local_manifest, capsys):
    manifest_uri, df = local_manifest
    blurry = variant(manifest_uri, df, "webp-blurred-judge", "webp", blurred)
    out = str(tmp_path / "gate-judge")
    # the judge must be measured
    assert (
        run_regress(
            "--baseline", manifest_uri, "--candidate", blurry, "--output", out, "--judge", "ciede2000"
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--judge ciede2000: not measured" in err and "Traceback" not in err
    args = ("--baseline", manifest_uri, "--candidate", blurry, "--output", out, "--gate", "prfnet")
    assert run_regress(*args, "--metrics", "psnr,psnr_y,ms_ssim,ciede2000", "--judge", "ciede2000") == 1
    md, doc = report(out)
    assert "judged by ciede2000" in md and doc["judge"] == "ciede2000"
    webp = next(r for r in doc["settings"] if r["codec"] == "webp")
    jpeg = next(r for r in doc["settings"] if r["codec"] == "jpeg")
    # blurred WebP is worse by CIEDE2000 on every triplet: P(candidate better) is exactly 0; JPEG is unchanged: 1/2
    assert webp["p"] == 0.0 and jpeg["p"] == 0.5
    assert {r["codec"] for r in doc["regressions"]} == {"webp"}
