"""Speed in the report: median encode/decode speed per codec beside its BD-rate, a speed–BD-rate plot, and no
speed section (and no error) for results without the sweep's timing columns."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pipeline.report import ReportOptions, html, make_report, markdown, speed, write

# encode megapixels per second by codec: jpeg fast, avif slow
ENCODE_MP_PER_S = {"jpeg": 80.0, "webp": 20.0, "avif": 0.5, "jxl": 4.0}


def with_timing(images: pd.DataFrame, *, rates: bool = True) -> pd.DataFrame:
    """The images with sweep timing columns: per codec a known speed, varied per image around it."""
    out = images.copy()
    rng = np.random.default_rng(1)
    mp = out["width"] * out["height"] / 1e6
    factor = rng.uniform(0.8, 1.25, len(out))
    enc = out["codec"].map(ENCODE_MP_PER_S) * factor
    dec = enc * 3
    out["encode_ms"] = mp * 1000 / enc
    out["decode_ms"] = mp * 1000 / dec
    out["encode_cpu_ms"] = out["encode_ms"] * 0.9
    out["decode_cpu_ms"] = out["decode_ms"] * 0.9
    if rates:
        out["encode_mp_per_s"] = enc
        out["decode_mp_per_s"] = dec
    out.loc[out.index[0], "encode_ms"] = None  # a missing value is left out of the median
    if rates:
        out.loc[out.index[0], "encode_mp_per_s"] = None
    return out


class Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids |= {v for k, v in attrs if k == "id" and v}


def ids_of(text: str) -> set[str]:
    p = Ids()
    p.feed(text)
    return p.ids


@pytest.fixture(scope="module")
def timed(tmp_path_factory, synthetic):
    s = type(synthetic)(with_timing(synthetic.images), synthetic.pairs, synthetic.strengths)
    source = s.write(str(tmp_path_factory.mktemp("speed") / "results"))
    report = make_report(source, ReportOptions(n_boot=50, top_disagreements=0))
    return s, report


def test_medians_per_codec_fastest_first_with_the_bd_rate_beside(timed):
    s, report = timed
    doc = report.document
    sp = doc["speed"]
    assert sp["bd_axis"] == "psnr" and sp["bd_axis_title"] == "PSNR"
    rows = {r["codec"]: r for r in sp["rows"]}
    assert [r["codec"] for r in sp["rows"]] == ["jpeg", "webp", "jxl", "avif"]
    images = s.images  # the first image has no encode time: left out of those medians (pandas skips NaN)
    for codec, g in images.groupby("codec"):
        r = rows[codec]
        assert r["encode_mp_per_s"] == pytest.approx(g["encode_mp_per_s"].median())
        assert r["decode_mp_per_s"] == pytest.approx(g["decode_mp_per_s"].median())
        assert r["encode_ms_per_mp"] == pytest.approx((1000 / g["encode_mp_per_s"]).median())
        mp = g["width"] * g["height"] / 1e6
        assert r["encode_cpu_ms_per_mp"] == pytest.approx((g["encode_cpu_ms"] / mp).median())
    assert rows["jpeg"]["n_images"] == (s.images["codec"] == "jpeg").sum() - 1
    bd = {r["codec"]: r for r in doc["bd_rate"]["axes"][0]["rows"]}
    assert rows["jpeg"]["bd_rate"] == 0.0  # the anchor
    for codec in ("webp", "avif", "jxl"):
        assert rows[codec]["bd_rate"] == pytest.approx(bd[codec]["bd_rate"])
        assert rows[codec]["bd_ci_low"] == pytest.approx(bd[codec]["ci_low"])
    assert any(f["name"] == "speed_bd_rate" for f in doc["figures"])


def test_markdown_and_html_show_the_speed_table_and_plot(timed, tmp_path):
    _, report = timed
    doc = report.document
    text = markdown.render(doc)
    section = text.split("## Speed", 1)[1]
    assert (
        "| codec | images | encode MP/s | decode MP/s | encode ms/MP | decode ms/MP | BD-rate % (PSNR) |"
        in (section)
    )
    jpeg = next(r for r in doc["speed"]["rows"] if r["codec"] == "jpeg")
    assert f"| jpeg | {jpeg['n_images']} | {jpeg['encode_mp_per_s']:.3g} |" in section
    page = html.render(report)
    ids = ids_of(page)
    assert {"speed", "speed-table", "figure-speed_bd_rate"} <= ids
    assert page.count('id="figure-speed_bd_rate"') == 1  # in its own section, not again under rate–quality
    assert '<a href="#speed">Speed</a>' in page
    folder = write(report, str(tmp_path / "out"))
    assert (tmp_path / "out" / "report" / "plots" / "speed_bd_rate.svg").exists()
    assert json.loads((tmp_path / "out" / "report" / "leaderboard.json").read_text())["speed"] == doc["speed"]
    assert folder.endswith("report")


def test_without_timing_columns_there_is_no_speed_section(tmp_path, synthetic):
    source = synthetic.write(str(tmp_path / "results"))
    report = make_report(source, ReportOptions(n_boot=20, top_disagreements=0))
    doc = report.document
    assert doc["speed"] is None
    assert not any(f["name"] == "speed_bd_rate" for f in doc["figures"])
    assert "## Speed" not in markdown.render(doc)
    page = html.render(report)
    assert "speed" not in ids_of(page) and '<a href="#speed">' not in page


def test_wall_times_alone_give_the_speed(make):
    images = make({"jpeg": 0.0, "webp": 0.3}, n_refs=3).images
    images = with_timing(images, rates=False).assign(curve=lambda d: d["codec"])
    table = speed.table(images)
    got = table.set_index("codec")["encode_mp_per_s"]
    mp = images["width"] * images["height"] / 1e6
    want = (mp * 1000 / images["encode_ms"]).groupby(images["codec"]).median()
    assert got.to_dict() == pytest.approx(want.to_dict())
    # columns present but empty: no speed
    empty = images.assign(encode_ms=np.nan, decode_ms=np.nan, encode_cpu_ms=np.nan, decode_cpu_ms=np.nan)
    assert speed.table(empty) is None
