"""index.html as a document: self-contained (nothing to fetch), every table and figure present, crops embedded.

The browser-level checks (it renders in Chromium, no request leaves the page) are in tests/jobs/test_report.py.
"""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from pipeline.report import ReportOptions, html, make_report
from pipeline.report.disagreements import Crops

URL_ATTRIBUTES = {
    "src",
    "href",
    "srcset",
    "action",
    "formaction",
    "poster",
    "data",
    "background",
    "xlink:href",
}


class Collector(HTMLParser):
    """Every start tag with its attributes, in order."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def page(tmp_path_factory, synthetic):
    source = synthetic.write(str(tmp_path_factory.mktemp("html") / "results"))
    report = make_report(source, ReportOptions(n_boot=50, top_disagreements=2))
    # the synthetic images do not exist: give the first disagreement real crops, keep the second's error
    square = np.asarray(Image.new("RGB", (16, 16), (200, 30, 30)))
    buf = io.BytesIO()
    Image.fromarray(square).save(buf, format="PNG")
    report.crops[0] = Crops((3, 4, 16, 16), buf.getvalue(), buf.getvalue(), buf.getvalue())
    report.document["disagreements"][0]["crop"] = {"x": 3, "y": 4, "w": 16, "h": 16}
    text = html.render(report)
    parser = Collector()
    parser.feed(text)
    return text, parser.tags, report


def test_nothing_to_fetch(page):
    text, tags, _ = page
    names = [t for t, _ in tags]
    assert "script" not in names and "link" not in names and "iframe" not in names and "object" not in names
    for tag, attrs in tags:
        for name, value in attrs.items():
            if name in URL_ATTRIBUTES and value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:60])
    assert "url(" not in text and "@import" not in text
    csp = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]


def test_every_leaderboard_bd_table_and_figure_is_there(page):
    _, tags, report = page
    doc = report.document
    ids = {a.get("id") for _, a in tags}
    for board in doc["leaderboards"]:
        assert f"leaderboard-{board['name']}" in ids
    for axis in doc["bd_rate"]["axes"]:
        assert f"bd-{axis['axis']}" in ids
    for fig in doc["figures"]:
        assert f"figure-{fig['name']}" in ids
    win_matrices = [a for t, a in tags if t == "table" and a.get("class") == "win-matrix"]
    assert len(win_matrices) == len(doc["leaderboards"])
    figure_images = [a["src"] for t, a in tags if t == "img"]
    # 4 figures + the three crops of the first disagreement
    assert len(figure_images) == len(doc["figures"]) + 3
    for src in figure_images:
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"))
        assert Image.open(io.BytesIO(data)).format == "PNG"


def test_a_disagreement_without_crops_says_why(page):
    text, _, report = page
    assert report.crops[1].error and f"No crops: {html.e(report.crops[1].error)}" in text
