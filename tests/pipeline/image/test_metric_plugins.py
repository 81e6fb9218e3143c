"""Choosing metrics by name, and third-party metrics found through the ``prfeval.metrics`` entry-point group.

The plug-in is a real package (tests/data/plugin_metric, with its own pyproject.toml) installed by pip into a
temporary folder; a separate Python process with that folder on its path must find it through
importlib.metadata, so nothing leaks into this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.image import metrics
from pipeline.image.metrics import DEFAULT_METRICS, METRICS, MetricUnavailableError, UnknownMetricError

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "tests" / "data" / "plugin_metric"


def test_select_defaults_and_order():
    assert metrics.select(None) == DEFAULT_METRICS == ("psnr", "psnr_y", "ms_ssim")
    assert metrics.select("") == DEFAULT_METRICS
    assert metrics.select(" ms_ssim, psnr ,ms_ssim") == ("ms_ssim", "psnr")
    assert metrics.select(["ciede2000", "ssimulacra2"]) == ("ciede2000", "ssimulacra2")


def test_select_unknown_name_suggests():
    with pytest.raises(UnknownMetricError, match="unknown metric 'ssimulacra'; did you mean 'ssimulacra2'"):
        metrics.select("psnr,ssimulacra")
    with pytest.raises(UnknownMetricError, match="did you mean 'ciede2000'"):
        metrics.select("ciede200")


def test_describe_has_implementation_and_version():
    described = metrics.describe(["psnr", "ssimulacra2"])
    assert [d["name"] for d in described] == ["psnr", "ssimulacra2"]
    assert described[1]["version"] == "0.3.0" and "ssimulacra2" in described[1]["implementation"]
    json.dumps(described)  # plain JSON (inf becomes Infinity, as the results' JSON writer handles)


def test_unavailable_is_a_clear_error(monkeypatch):
    registry = METRICS.copy()
    broken = metrics.MetricInfo(
        name="needs_tool", fn=lambda a, b: 0.0, higher_is_better=False, unit="", range=(0.0, 1.0),
        description="x", unavailable=lambda: "the tool is not installed",
    )  # fmt: skip
    registry.add(broken.name, broken)
    monkeypatch.setattr(metrics, "METRICS", registry)
    with pytest.raises(
        MetricUnavailableError, match="'needs_tool' is unavailable: the tool is not installed"
    ):
        metrics.select("psnr,needs_tool")
    assert metrics.select("needs_tool", check_available=False) == ("needs_tool",)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    build = tmp_path_factory.mktemp("plugin-src")
    subprocess.run(
        ["cp", "-r", str(PLUGIN), str(build)], check=True
    )  # pip builds in place: keep the tree clean
    src = build / PLUGIN.name
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-t",
        str(target),
        str(src),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(target.glob("prfeval_plugin_metric-*.dist-info/entry_points.txt"))
    return target


def _run(site: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def test_a_plugin_metric_is_discovered_through_entry_points(plugin_site):
    code = (
        "import json, numpy as np\n"
        "from pipeline.image import metrics\n"
        "names = metrics.select('psnr,mean_abs_error')\n"
        "a = np.zeros((16, 16, 3), np.uint8); b = a.copy(); b[..., 0] = 6\n"
        "values = metrics.compute_all(metrics.ReferenceStats(a), b, names)\n"
        "info = metrics.get_metric('mean_abs_error')\n"
        "print(json.dumps({'names': names, 'values': values, 'higher': info.higher_is_better,\n"
        "                  'described': metrics.describe(['mean_abs_error'])[0]}))\n"
    )
    done = _run(plugin_site, code)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["names"] == ["psnr", "mean_abs_error"]
    assert out["values"]["mean_abs_error"] == pytest.approx(2.0)
    assert out["higher"] is False
    assert (
        out["described"]["implementation"] == "prfeval-plugin-metric"
        and out["described"]["version"] == "0.1.0"
    )
    assert "mean_abs_error" not in METRICS  # this process never saw the plug-in


def test_prfeval_metrics_lists_the_plugin(plugin_site):
    done = _run(
        plugin_site, "import sys; from jobs.cli import main; sys.exit(main(['metrics', '--format', 'json']))"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = {m["name"]: m for m in json.loads(done.stdout)}
    assert {"psnr", "ssimulacra2", "butteraugli", "ciede2000", "mean_abs_error"} <= set(listed)
    assert listed["mean_abs_error"]["higher_is_better"] is False
