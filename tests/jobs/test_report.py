"""`prfeval report` end to end: a real sweep scored on a real local Ray, the report read back, and opened in a real
headless Chromium.

The sweep's WebP is renamed to a codec called ``<script>…</script>`` before scoring, so every part of the page
(tables, win matrices, BD-rate tables, legends, crop captions) is exercised with text that must be escaped.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no port, no extra
package). Requests are counted from the page's own Network events, so the browser's background traffic (update
checks and the like, which no flag fully silences) cannot be mistaken for the page's, and a control page that
does fetch something proves the counting works. A proxy that refuses connections keeps anything from leaving the
machine either way. The screenshot is kept in ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import select
import shutil
import subprocess
from pathlib import Path

import bjontegaard
import numpy as np
import pandas as pd
import pytest

from jobs import evaluate, report, sweep
from pipeline.io import markdown as md
from pipeline.io import storage
from pipeline.report.buckets import assign, parse
from pipeline.scoring import results

pytestmark = pytest.mark.slow

EVIL = '<script>document.title="pwned"</script>'
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SPEC = "jpeg:q=20,40,60,80 webp:q=20,40,60,80"
REFS = "samples:astronaut,coffee,chelsea?max_side=192"


# ----------------------------------------------------------------------------------------------------------------
# Results to report on


@pytest.fixture(scope="module")
def scored(tmp_path_factory, s3_server) -> str:
    """A real sweep (JPEG and WebP, four settings each, three photos) scored with PRFNet; WebP renamed to EVIL."""
    import ray

    if not ray.is_initialized():  # as the ray_local fixture does; module scope needs its own
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    base = tmp_path_factory.mktemp("scored")
    sweep_out, results_out = str(base / "sweep"), str(base / "results")
    assert (
        sweep.main(
            ["--refs", REFS, "--codecs", SPEC, "--output", sweep_out, "--executor", "local", "--quiet"]
        )
        == 0
    )
    manifest = pd.read_parquet(Path(sweep_out) / "manifest.parquet")
    manifest["codec"] = manifest["codec"].replace("webp", EVIL)
    renamed = Path(sweep_out) / "manifest-renamed.parquet"
    manifest.to_parquet(renamed, index=False)
    assert evaluate.main(["--manifest", str(renamed), "--output", results_out, "--no-progress"]) == 0
    return results_out


@pytest.fixture(scope="module")
def reported(scored, tmp_path_factory) -> tuple[str, Path, str]:
    """``prfeval report`` on the scored results: (results URI, report folder, printed output)."""
    out = tmp_path_factory.mktemp("reported")

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = report.main(
            ["--results", scored, "--output", str(out), "--n-boot", "200", "--top-disagreements", "3"]
        )
    assert code == 0
    return scored, out / "report", buf.getvalue()


md_text, md_tables = md.unescape, md.read_tables


def rounded(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


# ----------------------------------------------------------------------------------------------------------------
# Files


def test_report_agrees_with_the_parquet_inputs_and_markdown_with_json(reported):
    source, folder, printed = reported
    assert {p.name for p in folder.iterdir()} >= {"index.html", "leaderboard.md", "leaderboard.json", "plots"}
    assert f"report: {folder / 'index.html'}" in printed
    doc = json.loads((folder / "leaderboard.json").read_text())
    images, pairs = results.read_table(source, "images"), results.read_table(source, "pairs")
    run = results.read_run(source)

    assert doc["run"]["run_id"] == run["run_id"] and doc["results"] == source
    assert doc["counts"]["images"] == len(images) == 24 and doc["counts"]["pairs"] == len(pairs) == 3 * 28
    assert doc["codecs"] == sorted(images["codec"].unique()) == sorted([EVIL, "jpeg"])
    assert doc["bd_rate"]["anchor"] == "jpeg"
    # untrained weights make PRFNet's outcomes sit at 0.5, and the report says so; a trained checkpoint does not
    from model.bundled import default_checkpoint

    flat_warning = any("Is the checkpoint trained?" in w for w in doc["warnings"])
    assert flat_warning == (default_checkpoint("prfnet-tiny") is None)

    # leaderboards: the pairs whose two images share a bucket (computed here from Parquet alone)
    buckets = parse(doc["options"]["buckets"], images["bpp"])
    bucket_of = dict(zip(images["dist_id"], assign(images["bpp"], buckets), strict=True))
    a_b, b_b = pairs["a_id"].map(bucket_of), pairs["b_id"].map(bucket_of)
    used = (a_b == b_b) & (a_b >= 0) & (pairs["a_codec"] != pairs["b_codec"])
    assert doc["leaderboards"][0]["n_pairs"] == int(used.sum())
    for k, board in enumerate(doc["leaderboards"][1:]):
        assert board["n_pairs"] == int((used & (a_b == k)).sum())
        for row in board["rows"]:
            mine = images[(images["dist_id"].map(bucket_of) == k) & (images["codec"] == row["item"])]
            assert row["n_images"] == len(mine) and row["mean_bpp"] == pytest.approx(mine["bpp"].mean())
            assert row["n_refs"] == pairs[used & (a_b == k)]["ref_id"].nunique()

    # Markdown: the same rows as JSON, to the printed precision
    tables = md_tables((folder / "leaderboard.md").read_text())
    for board in (b for b in doc["leaderboards"] if b["rows"]):
        printed_rows = tables[board["label"]]
        assert [r["item"] for r in printed_rows] == [r["item"] for r in board["rows"]]
        for p, r in zip(printed_rows, board["rows"], strict=True):
            assert p["rank"] == str(r["rank"]) and p["pairs"] == str(r["n_comparisons"])
            assert p["95% CI"] == f"[{rounded(r['ci_low'], 4)}, {rounded(r['ci_high'], 4)}]"
            assert p["win rate"] == rounded(r["win_rate"], 3) and p["mean bpp"] == rounded(r["mean_bpp"], 3)
    for axis in doc["bd_rate"]["axes"]:
        printed_rows = tables[axis["label"]]
        assert [r["codec"] for r in printed_rows] == [r["codec"] for r in axis["rows"]]
        for p, r in zip(printed_rows, axis["rows"], strict=True):
            assert p["BD-rate %"].lstrip("+") == rounded(r["bd_rate"], 2)
            assert p["skipped"] == str(r["n_skipped"]) and p["reasons"] == r["reasons"]


def test_bd_rate_on_real_sweep_curves_matches_bjontegaard(reported):
    source, folder, _ = reported
    doc = json.loads((folder / "leaderboard.json").read_text())
    images = results.read_table(source, "images")
    axes = {a["axis"]: {r["codec"]: r for r in a["rows"]} for a in doc["bd_rate"]["axes"]}
    per_image = []
    for _, g in images.groupby("ref_id"):
        anchor, test = g[g["codec"] == "jpeg"].sort_values("bpp"), g[g["codec"] == EVIL].sort_values("bpp")
        per_image.append(
            bjontegaard.bd_rate(
                anchor["bpp"].to_numpy(),
                anchor["psnr"].to_numpy(),
                test["bpp"].to_numpy(),
                test["psnr"].to_numpy(),
                method="pchip",
                min_overlap=0,
            )
        )
    row = axes["psnr"][EVIL]
    assert row["n_images"] == 3 and row["n_skipped"] == 0
    assert row["bd_rate"] == pytest.approx(np.mean(per_image), abs=1e-8)
    assert row["median"] == pytest.approx(np.median(per_image), abs=1e-8)
    assert row["ci_low"] <= row["bd_rate"] <= row["ci_high"]
    # MS-SSIM needs 161 px on the short side: only the square astronaut (192 px) has it; the others say why
    ms = axes["ms_ssim"][EVIL]
    assert ms["n_images"] == 1 and ms["reasons"] == "non-finite values: 2"


def test_speed_from_the_sweep_timing_beside_the_bd_rate(reported):
    source, folder, _ = reported
    doc = json.loads((folder / "leaderboard.json").read_text())
    images = results.read_table(source, "images")
    assert {"encode_ms", "decode_ms", "encode_mp_per_s", "decode_mp_per_s"} <= set(images.columns)
    speed = {r["codec"]: r for r in doc["speed"]["rows"]}
    assert set(speed) == {"jpeg", EVIL}
    for codec, g in images.groupby("codec"):
        assert speed[codec]["encode_mp_per_s"] == pytest.approx(g["encode_mp_per_s"].median())
        assert speed[codec]["decode_mp_per_s"] == pytest.approx(g["decode_mp_per_s"].median())
        assert speed[codec]["n_images"] == len(g)
    psnr = {r["codec"]: r for r in doc["bd_rate"]["axes"][0]["rows"]}
    assert speed["jpeg"]["bd_rate"] == 0 and speed[EVIL]["bd_rate"] == pytest.approx(psnr[EVIL]["bd_rate"])
    printed = md_tables((folder / "leaderboard.md").read_text())["Speed"]
    assert [r["codec"] for r in printed] == [r["codec"] for r in doc["speed"]["rows"]]
    assert printed[0]["encode MP/s"] == f"{doc['speed']['rows'][0]['encode_mp_per_s']:.3g}"
    assert (folder / "plots" / "speed_bd_rate.png").exists()


def test_by_setting_with_explicit_buckets(scored, tmp_path):
    out = tmp_path / "by-setting"
    args = ["--results", scored, "--output", str(out), "--by", "setting", "--buckets", "0,0.5,1,inf"]
    assert report.main([*args, "--n-boot", "50", "--anchor", EVIL]) == 0
    doc = json.loads((out / "report" / "leaderboard.json").read_text())
    assert [b["label"] for b in doc["buckets"]] == ["0–0.5 bpp", "0.5–1 bpp", "1–∞ bpp"]
    items = {r["item"] for r in doc["leaderboards"][0]["rows"]}
    assert items and all(re.fullmatch(rf"(jpeg|{re.escape(EVIL)}) q=\d+", i) for i in items)
    assert doc["bd_rate"]["anchor"] == EVIL and doc["bd_rate"]["anchor_choice"] == "--anchor"


def test_unusable_input_exits_2_with_a_message(scored, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert report.main(["--results", str(tmp_path / "nothing"), "--output", out]) == 2
    assert "no results in" in capsys.readouterr().err
    assert report.main(["--results", scored, "--output", out, "--anchor", "hevc"]) == 2
    err = capsys.readouterr().err
    assert "unknown anchor codec 'hevc'" in err and "jpeg" in err
    assert report.main(["--results", scored, "--output", out, "--buckets", "1,0.5"]) == 2
    assert "strictly increasing" in capsys.readouterr().err
    assert report.main(["--results", scored, "--output", out, "--n-boot", "0"]) == 2
    assert report.main(["--results", scored, "--output", out, "--by", "team"]) == 2
    assert report.main(["--output", out]) == 2
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# S3


def test_report_from_s3_to_s3(ray_local, s3, s3_manifest):
    manifest_uri, df = s3_manifest
    results_uri, out = s3.uri("results"), s3.uri("published")
    assert evaluate.main(["--manifest", manifest_uri, "--output", results_uri, "--no-progress"]) == 0
    assert (
        report.main(["--results", results_uri, "--output", out, "--n-boot", "50", "--top-disagreements", "2"])
        == 0
    )
    keys = set(s3.fs.find(f"{s3.bucket}/published/report"))
    for name in (
        "index.html",
        "leaderboard.md",
        "leaderboard.json",
        "plots/rate_psnr.png",
        "plots/rate_psnr.svg",
    ):
        assert f"{s3.bucket}/published/report/{name}" in keys
    doc = json.loads(s3.fs.cat(f"{s3.bucket}/published/report/leaderboard.json"))
    assert doc["results"] == results_uri and doc["counts"]["images"] == len(df)
    assert doc["codecs"] == ["jpeg", "webp"] and doc["leaderboards"][0]["rows"]
    # crops are cut from the images in the bucket: those of the disagreements shown (a trained PRFNet may agree
    # with PSNR on every pair of this small set), and a direct cut of one pair read through S3
    assert all(d["crop"] and d["crop_error"] is None for d in doc["disagreements"])
    from pipeline.report.disagreements import crops

    imgs = results.read_table(results_uri, "images")
    first, second = imgs[imgs.ref_id == imgs.ref_id.iloc[0]].iloc[:2].itertuples()
    assert first.dist_uri.startswith("s3://")
    cut = crops(first.ref_uri, first.dist_uri, second.dist_uri)
    assert cut.error is None and cut.o and cut.a and cut.b and cut.box is not None
    page = s3.fs.cat(f"{s3.bucket}/published/report/index.html").decode()
    assert page.count("data:image/png;base64,") >= len(doc["figures"]) + 3 * len(doc["disagreements"])
    assert storage.redact(page) == page  # no credentials anywhere


# ----------------------------------------------------------------------------------------------------------------
# Chromium


def chromium_binary() -> str | None:
    """Debian's Chromium: the binary itself (the /usr/bin launcher adds extensions that phone home), else PATH."""
    if os.access("/usr/lib/chromium/chromium", os.X_OK):
        return "/usr/lib/chromium/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """Chromium driven over ``--remote-debugging-pipe``: NUL-terminated JSON messages on fds 3 (in) and 4 (out)."""

    def __init__(self, binary: str, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--proxy-server=http://127.0.0.1:9",  # refuses connections: nothing leaves the machine
            "--proxy-bypass-list=<-loopback>",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # close_fds would close 3 and 4 after child_fds ran; Python's own descriptors are not inheritable anyway
        self.proc = subprocess.Popen(
            args, preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], 300)  # a hang guard, not a speed check
            if not ready:
                raise TimeoutError("Chromium stopped answering on the DevTools pipe")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, tab: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if tab:
            message["sessionId"] = tab
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, tab: str, **params) -> dict:
        def matches(event: dict) -> bool:
            return (
                event.get("method") == method
                and event.get("sessionId") == tab
                and all(event["params"].get(k) == v for k, v in params.items())
            )

        for event in self.events:
            if matches(event):
                return event
        while True:
            event = self._read_message()
            self.events.append(event)
            if matches(event):
                return event

    def open(self, url: str, width: int = 1200) -> tuple[str, list[str]]:
        """Load ``url`` in a new tab with request logging on; the tab id and the page's network requests."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        tab = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Network.enable", "Page.enable", "Runtime.enable"):
            self.call(method, tab=tab)
        self.call("Page.setLifecycleEventsEnabled", {"enabled": True}, tab=tab)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            tab=tab,
        )
        self.events.clear()
        self.call("Page.navigate", {"url": url}, tab=tab)
        self.wait_for("Page.loadEventFired", tab)
        self.wait_for("Page.lifecycleEvent", tab, name="networkIdle")
        return tab, self.requests(tab)

    def requests(self, tab: str) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == tab
        ]

    def evaluate(self, tab: str, expression: str):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            tab,
        )
        return result["result"].get("value")

    def screenshot(self, tab: str) -> bytes:
        height = self.evaluate(tab, "document.documentElement.scrollHeight")
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1200, "height": height, "scale": 1},
            },
            tab,
        )
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def browser(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "Chromium is not installed (Debian package 'chromium'; `make system-deps` installs it as root)"
        )
    devtools = DevTools(binary, tmp_path / "profile")
    yield devtools
    devtools.close()


PAGE_FACTS = """(() => ({
  title: document.title,
  h1: document.querySelector('h1') && document.querySelector('h1').textContent,
  scripts: document.querySelectorAll('script').length,
  leaderboards: [...document.querySelectorAll('table.leaderboard')].map(t => ({
    id: t.id,
    visible: t.getBoundingClientRect().width > 0 && t.getBoundingClientRect().height > 0,
    items: [...t.tBodies[0].rows].map(r => r.cells[1].textContent),
  })),
  figures: [...document.querySelectorAll('figure[id^="figure-"] img')].map(i => ({
    id: i.closest('figure').id, loaded: i.complete && i.naturalWidth > 0, width: i.getBoundingClientRect().width,
  })),
  crops: [...document.querySelectorAll('.triplet img')].map(i => i.complete && i.naturalWidth > 0),
  bdTables: [...document.querySelectorAll('table.bd-rate')].length,
  speed: [...document.querySelectorAll('table.speed')].map(t => ({
    visible: t.getBoundingClientRect().width > 0 && t.getBoundingClientRect().height > 0,
    codecs: [...t.tBodies[0].rows].map(r => r.cells[0].textContent),
  })),
}))()"""


def test_report_renders_in_chromium_without_any_request(reported, browser, tmp_path):
    _, folder, _ = reported
    doc = json.loads((folder / "leaderboard.json").read_text())
    page_url = (folder / "index.html").as_uri()

    # control: the same browser does see a page's requests when there are some
    control = tmp_path / "control.html"
    control.write_text(
        '<!doctype html><html><head><link rel="stylesheet" href="https://fonts.example.invalid/a.css"></head>'
        '<body><img src="http://images.example.invalid/x.png"></body></html>'
    )
    _, control_requests = browser.open(control.as_uri())
    assert any("fonts.example.invalid" in u for u in control_requests)
    assert any("images.example.invalid" in u for u in control_requests)

    tab, requests = browser.open(page_url)
    outside = [u for u in requests if u != page_url and not u.startswith("data:")]
    assert outside == [], f"the report page made requests: {outside}"
    assert page_url in requests

    facts = browser.evaluate(tab, PAGE_FACTS)
    assert (
        facts["title"] == "prfeval leaderboard" and facts["h1"] == "prfeval leaderboard"
    )  # EVIL did not run
    assert facts["scripts"] == 0
    boards = {b["id"]: b for b in facts["leaderboards"]}
    for board in doc["leaderboards"]:
        if board["rows"]:
            shown = boards[f"leaderboard-{board['name']}"]
            assert shown["visible"]
            assert shown["items"] == [r["item"] for r in board["rows"]]  # EVIL shown as text
    assert EVIL in boards["leaderboard-all"]["items"]
    assert {f["id"] for f in facts["figures"]} == {f"figure-{f['name']}" for f in doc["figures"]}
    assert all(f["loaded"] and f["width"] > 100 for f in facts["figures"])
    assert len(facts["crops"]) == 3 * len(doc["disagreements"]) > 0 and all(facts["crops"])
    assert facts["bdTables"] == len(doc["bd_rate"]["axes"])
    assert len(facts["speed"]) == 1 and facts["speed"][0]["visible"]  # the sweep's timing, per codec
    assert facts["speed"][0]["codecs"] == [r["codec"] for r in doc["speed"]["rows"]]  # EVIL shown as text
    assert "figure-speed_bd_rate" in {f["id"] for f in facts["figures"]}

    png = browser.screenshot(tab)
    assert png.startswith(b"\x89PNG")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-chromium.png"
    shot.write_bytes(png)
    print(f"screenshot: {shot}")
