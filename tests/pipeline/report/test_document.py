"""The report from a results folder: JSON agrees with the Parquet inputs and with known answers, Markdown agrees
with JSON, text from the data is escaped, unusable input is refused with a clear message."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.io import markdown as md
from pipeline.io.markdown import cell
from pipeline.report import ReportInputError, ReportOptions, make_report, markdown, write
from pipeline.report.buckets import assign, parse
from pipeline.scoring import results

OPTIONS = ReportOptions(n_boot=100, seed=3, top_disagreements=3)


md_text, md_tables = md.unescape, md.read_tables


def close(text: str, value: float | None, digits: int) -> bool:
    """A printed number against the JSON value it was rounded from."""
    if value is None:
        return text == "–"
    return abs(float(text) - value) <= 0.5 * 10**-digits + 1e-12


def interval_close(text: str, low: float | None, high: float | None, digits: int) -> bool:
    if low is None or high is None:
        return text == "–"
    lo, hi = text.strip("[]").split(", ")
    return close(lo, low, digits) and close(hi, high, digits)


def assert_markdown_matches_json(md: str, doc: dict) -> None:
    """Every leaderboard and BD-rate row of the Markdown equals the JSON's, to the printed precision."""
    tables = md_tables(md)
    level = f"{100 * (1 - doc['options']['alpha']):g}% CI"
    boards = [b for b in doc["leaderboards"] if b["rows"]]
    assert boards
    for board in boards:
        rows = tables[board["label"]]
        assert len(rows) == len(board["rows"])
        for printed, row in zip(rows, board["rows"], strict=True):
            assert printed["item"] == row["item"]
            assert int(printed["rank"]) == row["rank"]
            assert close(printed["score"], row["score"], 4)
            assert interval_close(printed[level], row["ci_low"], row["ci_high"], 4)
            assert close(printed["win rate"], row["win_rate"], 3)
            assert int(printed["pairs"]) == row["n_comparisons"]
            assert int(printed["refs"]) == row["n_refs"]
            assert int(printed["images"]) == row["n_images"]
            assert close(printed["mean bpp"], row["mean_bpp"], 3)
    for axis in doc["bd_rate"]["axes"]:
        rows = tables[axis["label"]]
        assert len(rows) == len(axis["rows"])
        for printed, row in zip(rows, axis["rows"], strict=True):
            assert printed["codec"] == row["codec"]
            assert close(printed["BD-rate %"], row["bd_rate"], 2)
            assert interval_close(printed[level], row["ci_low"], row["ci_high"], 2)
            assert close(printed["median %"], row["median"], 2)
            assert int(printed["images"]) == row["n_images"]
            assert int(printed["skipped"]) == row["n_skipped"]
            assert printed["reasons"] == row["reasons"]


@pytest.fixture(scope="module")
def written(tmp_path_factory, synthetic):
    """The synthetic results as a results folder and its report: (results URI, report folder, JSON, tables)."""
    base = tmp_path_factory.mktemp("written")
    source = synthetic.write(str(base / "results"))
    folder = write(make_report(source, OPTIONS), str(base / "out"))
    doc = json.loads((base / "out" / "report" / "leaderboard.json").read_text())
    return source, folder, doc, synthetic


def test_writes_the_report_folder(written):
    _, folder, doc, _ = written
    report = Path(folder)
    assert report.name == "report" and report.parent.name == "out"
    names = {p.name for p in report.iterdir()}
    assert {"index.html", "leaderboard.md", "leaderboard.json", "plots"} <= names
    plots = {p.name for p in (report / "plots").iterdir()}
    for fig in doc["figures"]:
        assert fig["png"].removeprefix("plots/") in plots and fig["svg"].removeprefix("plots/") in plots
    assert {f["name"] for f in doc["figures"]} == {
        "leaderboard",
        "rate_psnr",
        "rate_ms_ssim",
        "rate_prf_score",
    }
    png = (report / "plots" / "rate_psnr.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_json_agrees_with_the_parquet_inputs(written):
    source, _, doc, synth = written
    images, pairs = results.read_table(source, "images"), results.read_table(source, "pairs")
    assert doc["counts"]["images"] == len(images) == len(synth.images)
    assert doc["counts"]["pairs"] == len(pairs)
    assert doc["counts"]["references"] == images["ref_id"].nunique()
    assert doc["codecs"] == sorted(images["codec"].unique())
    assert doc["run"]["run_id"] == "run-synthetic"
    buckets = parse(doc["options"]["buckets"], images["bpp"])
    assert [b["label"] for b in doc["buckets"]] == [b.label for b in buckets]
    bucket_of = dict(zip(images["dist_id"], assign(images["bpp"], buckets), strict=True))
    a_b, b_b = pairs["a_id"].map(bucket_of), pairs["b_id"].map(bucket_of)
    used = (a_b == b_b) & (a_b >= 0) & (pairs["a_codec"] != pairs["b_codec"])
    assert doc["leaderboards"][0]["n_pairs"] == int(used.sum())
    for k, board in enumerate(doc["leaderboards"][1:]):
        assert board["n_pairs"] == int((used & (a_b == k)).sum())
        in_bucket = images[images["dist_id"].map(bucket_of) == k]
        for row in board["rows"]:
            mine = in_bucket[in_bucket["codec"] == row["item"]]
            assert row["n_images"] == len(mine)
            assert row["mean_bpp"] == pytest.approx(mine["bpp"].mean())
            mine_pairs = pairs[
                used & (a_b == k) & ((pairs["a_codec"] == row["item"]) | (pairs["b_codec"] == row["item"]))
            ]
            assert row["n_comparisons"] == len(mine_pairs)
    assert doc["counts"]["pairs_across_buckets"] == int(((a_b != b_b) | (a_b < 0)).sum())


def test_bd_rate_in_json_has_the_known_answer(written):
    # synthetic curves: PSNR = 30 + 3 log2(bpp / base) + s, PRFNet score = log2(bpp / base) + s, so at equal
    # quality a codec needs 2**(-Δs / 3) (PSNR) or 2**(-Δs) (PRFNet) times the anchor's rate, on every image
    _, _, doc, synth = written
    s = synth.strengths
    assert doc["bd_rate"]["anchor"] == "jpeg" and doc["bd_rate"]["anchor_choice"].startswith("default")
    axes = {a["axis"]: a for a in doc["bd_rate"]["axes"]}
    assert set(axes) == {"psnr", "ms_ssim", "prf_score"}
    for axis, slope in (("psnr", 3.0), ("prf_score", 1.0)):
        rows = {r["codec"]: r for r in axes[axis]["rows"]}
        assert set(rows) == {"webp", "avif", "jxl"}
        for codec, row in rows.items():
            expected = (2.0 ** (-(s[codec] - s["jpeg"]) / slope) - 1) * 100
            assert row["bd_rate"] == pytest.approx(expected, abs=1e-9)
            assert row["ci_low"] == pytest.approx(expected, abs=1e-9)  # identical on every image
            assert row["n_images"] == 20 and row["n_skipped"] == 0 and row["reasons"] == ""
        assert [r["codec"] for r in axes[axis]["rows"]] == ["avif", "webp", "jxl"]  # best first


def test_markdown_agrees_with_json(written):
    _, folder, doc, _ = written
    md = (Path(folder) / "leaderboard.md").read_text()
    assert_markdown_matches_json(md, doc)
    assert "fitted to PRFNet" in md and f"{doc['options']['n_boot']} bootstrap resamples" in md


def test_reasons_instead_of_values_and_the_chosen_anchor(make, tmp_path):
    synth = make({"avif": 0.5, "webp": 0.0, "jxl": 0.2}, n_refs=5, n_settings=4)
    # jxl with three settings only: its BD-rate cannot be computed and says why
    synth.images = synth.images[~((synth.images["codec"] == "jxl") & (synth.images["setting"] == "q=3"))]
    source = synth.write(str(tmp_path / "results"))
    report = make_report(source, ReportOptions(n_boot=50, figures=False))
    doc = report.document
    assert doc["bd_rate"]["anchor"] == "avif"  # no jpeg: the first alphabetically
    assert "alphabetically" in doc["bd_rate"]["anchor_choice"]
    psnr = {r["codec"]: r for r in doc["bd_rate"]["axes"][0]["rows"]}
    assert psnr["jxl"]["bd_rate"] is None and psnr["jxl"]["reasons"] == "fewer than 4 points: 5"
    assert psnr["webp"]["bd_rate"] is not None
    explicit = make_report(source, ReportOptions(n_boot=50, anchor="webp", figures=False)).document
    assert explicit["bd_rate"]["anchor"] == "webp" and explicit["bd_rate"]["anchor_choice"] == "--anchor"
    assert_markdown_matches_json(markdown.render(doc), doc)


def test_data_strings_are_escaped_everywhere(make, tmp_path):
    evil = '<script>document.title="pwned"</script>'
    piped = "a|b $x$ & <b>"
    synth = make({"jpeg": 0.0, evil: 0.5, piped: 1.0}, n_refs=4)
    synth.images["ref_id"] = synth.images["ref_id"].where(synth.images["ref_id"] != "ref00", "<img src=x>")
    synth.pairs["ref_id"] = synth.pairs["ref_id"].where(synth.pairs["ref_id"] != "ref00", "<img src=x>")
    source = synth.write(str(tmp_path / "results"))
    write(make_report(source, ReportOptions(n_boot=50, top_disagreements=0)), str(tmp_path / "out"))
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    md = (tmp_path / "out" / "report" / "leaderboard.md").read_text()
    doc = json.loads((tmp_path / "out" / "report" / "leaderboard.json").read_text())
    assert "<script" not in page.lower() and "<img src=x>" not in page
    assert html.escape(evil) in page and html.escape(piped) in page
    assert "<script" not in md.lower() and "<b>" not in md
    assert evil in doc["codecs"] and piped in doc["codecs"]
    assert_markdown_matches_json(md, doc)


def test_no_results_and_unknown_anchor_are_refused(tmp_path, synthetic):
    with pytest.raises(ReportInputError, match="no results in"):
        make_report(str(tmp_path / "empty"), OPTIONS)
    source = synthetic.write(str(tmp_path / "results"))
    with pytest.raises(
        ReportInputError, match=r"unknown anchor codec 'hevc'; codecs in the results: avif, jpeg"
    ):
        make_report(source, ReportOptions(anchor="hevc", n_boot=10, figures=False))
    with pytest.raises(ReportInputError, match="bucket spec"):
        make_report(source, ReportOptions(buckets="cheap,expensive", n_boot=10))


def test_results_without_pairs_still_report_bd_rates(make, tmp_path):
    synth = make({"jpeg": 0.0, "webp": 0.3}, n_refs=3)
    synth.pairs = synth.pairs.iloc[:0]
    source = synth.write(str(tmp_path / "results"))
    doc = make_report(source, ReportOptions(n_boot=20, figures=False)).document
    assert "the results hold no pairs: there is nothing to rank" in doc["warnings"]
    assert all(not b["rows"] for b in doc["leaderboards"])
    assert doc["bd_rate"]["axes"][0]["rows"][0]["bd_rate"] is not None


def test_flat_model_outcomes_are_flagged(make, tmp_path):
    synth = make({"jpeg": 0.0, "webp": 0.01}, n_refs=6, content_sd=0.0, noise_sd=0.0)
    source = synth.write(str(tmp_path / "results"))
    doc = make_report(source, ReportOptions(n_boot=20, figures=False)).document
    assert any("Is the checkpoint trained?" in w for w in doc["warnings"])
    strong = make({"jpeg": 0.0, "webp": 2.0}, n_refs=6)
    doc = make_report(
        strong.write(str(tmp_path / "strong")), ReportOptions(n_boot=20, figures=False)
    ).document
    assert not any("Is the checkpoint trained?" in w for w in doc["warnings"])


def test_json_is_strict(written):
    text = (Path(written[1]) / "leaderboard.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["format"] == "prfeval-report" and doc["version"] == 1
    frame = pd.DataFrame(doc["leaderboards"][0]["rows"])
    assert np.isfinite(frame[["score", "ci_low", "ci_high"]].to_numpy(dtype=float)).all()


def test_codec_and_setting_names_are_one_escaped_cell_in_leaderboard_md(make, tmp_path):
    evil = "x|y<script>"
    synth = make({"jpeg": 0.0, evil: 0.5}, n_refs=4)
    odd = {f"q={k}": f"q={k} *b* `c`\n_d_ [e]" for k in range(4)}
    synth.images["setting"] = synth.images["setting"].map(odd)
    for col in ("a_setting", "b_setting"):
        synth.pairs[col] = synth.pairs[col].map(odd)
    source = synth.write(str(tmp_path / "results"))
    options = ReportOptions(n_boot=20, by="setting", figures=False, top_disagreements=0)
    write(make_report(source, options), str(tmp_path / "out"))
    md = (tmp_path / "out" / "report" / "leaderboard.md").read_text()
    doc = json.loads((tmp_path / "out" / "report" / "leaderboard.json").read_text())
    assert "<script" not in md and evil not in md and "`c`" not in md and "*b*" not in md
    assert r"x\|y&lt;script&gt; q=0 \*b\* \`c\` \_d\_ \[e\]" in md
    lines = md.splitlines()
    board = next(b for b in doc["leaderboards"] if b["rows"])
    items = [r["item"] for r in board["rows"]]
    assert any(evil in i and "\n" in i for i in items)
    start = lines.index("## " + cell(board["label"]))
    table = [line for line in lines[start:] if line.startswith("|")][: 2 + len(items)]
    widths = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
    assert widths == {len(markdown.LEADERBOARD_HEADER) + 1}  # every row: the header's cells, no more
    printed = [md_text(re.split(r"(?<!\\)\|", row)[2].strip()) for row in table[2:]]
    assert printed == [i.replace("\n", " ") for i in items]
