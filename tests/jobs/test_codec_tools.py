"""A codec engineer's day end to end on the real S3 server: sweep the new encoders with options and bpp targets,
evaluate with the added metrics, report — every metric an axis, speed per codec, options and targets recorded —
and the bad inputs (an unknown metric, an option a codec does not have, an unreachable target) each said once.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs import evaluate, report, sweep
from jobs import metrics as metrics_cmd
from pipeline.image import samples
from pipeline.io import schemas, storage
from pipeline.scoring import results

pytestmark = pytest.mark.slow

METRICS = "psnr,ms_ssim,ssimulacra2,butteraugli,ciede2000"
SPEC = (
    "jpeg:q=30,50,70,90 jpegli:q=30,50,70,90;subsampling=444 mozjpeg:q=30,50,70,90 mozjpeg:bpp=1.0 "
    "heic:q=30,50,70,90;subsampling=420 jxl:d=1,2,3,5;effort=3 jpeg:bpp=0.05"
)
GOOD_SETTINGS = 4 * 5 + 1  # per reference; jpeg:bpp=0.05 cannot be reached on these photos


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_sweep_evaluate_report_with_new_encoders_metrics_and_speed(s3, ray_local, capsys):
    refs = {
        "astronaut": samples.load_sample("astronaut", max_side=192)[30:126, 40:136],  # 96 x 96
        "coffee": samples.load_sample("coffee", max_side=192)[10:82, 20:100],  # 80 x 72
    }
    for name, rgb in refs.items():
        storage.write_bytes(s3.uri(f"refs/{name}.png"), png(rgb))
    sweep_out, results_out, report_out = s3.uri("sweep"), s3.uri("results"), s3.uri("published")

    # sweep: every row but the unreachable target completes; exit 1 for the error rows
    argv = ["--refs", s3.uri("refs/"), "--codecs", SPEC, "--output", sweep_out, "--executor", "local"]
    assert sweep.main([*argv, "--quiet"]) == 1
    capsys.readouterr()
    with s3.fs.open(f"{s3.bucket}/sweep/errors/sweep.parquet", "rb") as f:
        errors = pq.read_table(f).to_pylist()
    assert sorted(e["dist_id"] for e in errors) == ["astronaut/jpeg/bpp=0.05", "coffee/jpeg/bpp=0.05"]
    for e in errors:
        assert e["error"] == "bpp_unreachable" and e["ref_id"] in e["message"] and "bpp" in e["message"]
        assert "gives" in e["message"]  # what the lowest quality reached
    with s3.fs.open(f"{s3.bucket}/sweep/codecs.parquet", "rb") as f:
        codecs = {r["codec"]: r for r in pq.read_table(f).to_pylist()}
    assert set(codecs) == {"jpeg", "jpegli", "mozjpeg", "heic", "jxl"}
    assert "subsampling=444|422|420" in codecs["jpeg"]["options"] and "effort=" in codecs["jxl"]["options"]

    # evaluate with the added metrics, codec metadata joined
    code = evaluate.main(
        ["--manifest", storage.join(sweep_out, "manifest.parquet"), "--codecs",
         storage.join(sweep_out, "codecs.parquet"), "--output", results_out, "--metrics", METRICS,
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()
    images = results.read_table(results_out, "images")
    assert len(images) == 2 * GOOD_SETTINGS
    for col in schemas.TIMING_COLUMNS:
        assert (images[col] > 0).all(), col
    for metric in ("ssimulacra2", "butteraugli", "ciede2000"):
        assert images[metric].notna().all(), metric
    assert (images["butteraugli"] > 0).all() and (images["ciede2000"] > 0).all()
    assert images["ms_ssim"].isna().all()  # 96 px: too small for 5 scales
    target = images[images["setting"] == "bpp=1.0"]
    assert len(target) == 2 and (target["codec"] == "mozjpeg").all()
    assert (
        (target["target_bpp"] == 1.0).all() and (target["bpp"] <= 1.0).all() and (target["bpp"] > 0.3).all()
    )
    assert target["knob_value"].notna().all()
    options = {
        r.setting: json.loads(r.codec_options) for r in images[images["codec"] == "jpegli"].itertuples()
    }
    assert options["q=30;subsampling=444"]["subsampling"] == "444"
    assert json.loads(images[images["codec"] == "jxl"]["codec_options"].iloc[0])["effort"] == "3"
    run = results.read_run(results_out)
    assert [m["name"] for m in run["metrics"]] == METRICS.split(",")

    # report: every metric an axis, a speed column per codec
    assert report.main(["--results", results_out, "--output", report_out, "--n-boot", "50"]) == 0
    capsys.readouterr()
    doc = json.loads(s3.fs.cat(f"{s3.bucket}/published/report/leaderboard.json"))
    axes = [a["axis"] for a in doc["bd_rate"]["axes"]]
    assert axes == ["psnr", "ms_ssim", "ssimulacra2", "butteraugli", "ciede2000", "prf_score"]
    lower = {a["axis"] for a in doc["bd_rate"]["axes"] if not a["higher_is_better"]}
    assert lower == {"butteraugli", "ciede2000"}
    speed = {r["codec"]: r for r in doc["speed"]["rows"]}
    assert set(speed) == {"jpeg", "jpegli", "mozjpeg", "heic", "jxl"}
    for codec, g in images.groupby("codec"):
        assert speed[codec]["encode_mp_per_s"] == pytest.approx(g["encode_mp_per_s"].median())
        assert speed[codec]["decode_ms_per_mp"] == pytest.approx((1000 / g["decode_mp_per_s"]).median())
    assert speed["jpeg"]["bd_rate"] == 0  # the anchor
    psnr = {r["codec"]: r["bd_rate"] for r in doc["bd_rate"]["axes"][0]["rows"]}
    for codec in ("jpegli", "mozjpeg", "heic", "jxl"):
        want = None if psnr[codec] is None else pytest.approx(psnr[codec])
        assert speed[codec]["bd_rate"] == want, codec
    assert any(r["bd_rate"] is not None and r["codec"] != "jpeg" for r in doc["speed"]["rows"])
    page = s3.fs.cat(f"{s3.bucket}/published/report/index.html").decode()
    for axis in axes:
        assert f'id="bd-{axis}"' in page
    for metric in ("ssimulacra2", "butteraugli", "ciede2000"):
        assert f'id="figure-rate_{metric}"' in page
    assert 'id="speed-table"' in page and 'id="figure-speed_bd_rate"' in page and "encode MP/s" in page
    md = s3.fs.cat(f"{s3.bucket}/published/report/leaderboard.md").decode()
    assert "## Speed" in md and "### Butteraugli" in md and "### CIEDE2000 \\[ΔE00\\]" in md
    assert storage.redact(page) == page


def test_bad_inputs_are_one_line_each(tmp_path, capsys):
    out = str(tmp_path / "out")
    # an unknown metric: exit 2, one line, a suggestion
    code = evaluate.main(
        ["--manifest", str(tmp_path / "m.csv"), "--output", out, "--metrics", "psnr,butteraugl"]
    )
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert "butteraugl" in line and "did you mean" in line and "butteraugli" in line
    # an option the codec does not have: exit 2, one line, naming what it takes
    code = sweep.main(["--refs", "samples:coffee", "--codecs", "jxl:d=1;subsampling=420", "--output", out])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert "subsampling" in line and "effort" in line
    assert not (tmp_path / "out").exists()
    # the metrics the selection can name, with their direction
    assert metrics_cmd.main([]) == 0
    listing = capsys.readouterr().out
    for name in METRICS.split(","):
        assert name in listing
