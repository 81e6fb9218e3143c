"""`--metrics` end to end: evaluate on S3 with the added metrics, every metric an images column and a report axis;
an unknown metric name is one line with "did you mean" and exit 2, before Ray starts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jobs import evaluate, report
from pipeline.image import fr_metrics
from pipeline.scoring import results

SELECTED = ["psnr", "ms_ssim", "ssimulacra2", "butteraugli", "ciede2000"]


def test_unknown_metric_is_one_line_exit_2(tmp_path, local_manifest, capsys, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    manifest_uri, _ = local_manifest
    argv = ["--manifest", manifest_uri, "--output", str(tmp_path / "o"), "--metrics", "psnr,ssimulacra"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'ssimulacra2'" in err


@pytest.mark.slow
@pytest.mark.skipif(fr_metrics.butteraugli_program() is None, reason="butteraugli_main not installed")
def test_evaluate_with_metrics_then_report_has_every_axis(ray_local, s3, s3_manifest):
    manifest_uri, _ = s3_manifest
    out, rep = s3.uri("out-metrics"), s3.uri("rep-metrics")
    argv = ["--manifest", manifest_uri, "--output", out, "--no-progress", "--metrics", ",".join(SELECTED)]
    assert evaluate.main(argv) in (0, 1)
    images = results.read_table(out, "images")
    for name in SELECTED:
        assert name in images.columns, name
    assert images["ssimulacra2"].notna().all() and (images["butteraugli"] >= 0).all()
    run = results.read_run(out)
    assert [m["name"] for m in run["metrics"]] == SELECTED
    assert all(m["implementation"] and m["version"] for m in run["metrics"])
    assert report.main(["--results", out, "--output", rep, "--n-boot", "50"]) == 0
    from pipeline.io import storage

    doc = json.loads(storage.read_text(storage.join(rep, "report", "leaderboard.json")))
    axes = {a["axis"]: a for a in doc["bd_rate"]["axes"]}
    for name in SELECTED:
        assert name in axes, name
    assert axes["butteraugli"]["higher_is_better"] is False and axes["ciede2000"]["higher_is_better"] is False
    assert isinstance(pd.DataFrame(axes["ssimulacra2"]["rows"]), pd.DataFrame)
