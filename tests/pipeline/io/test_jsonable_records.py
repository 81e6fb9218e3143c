"""The JSON sanitiser, the fingerprint and the typed records between stages."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.io import jsonable as js
from pipeline.io.records import DistortedImage, ErrorRow, ReferenceGroup, group_key


def test_jsonable_makes_strict_json():
    doc = {1: np.float64(0.5), "nan": float("nan"), "inf": np.float32("inf"), "na": pd.NA, "nat": pd.NaT,
           "t": (np.int64(3), [np.bool_(True)]), "s": "x"}  # fmt: skip
    out = js.jsonable(doc)
    assert out == {"1": 0.5, "nan": None, "inf": None, "na": None, "nat": None, "t": [3, [True]], "s": "x"}
    assert type(out["t"][0]) is int
    json.loads(js.dumps(doc))  # strict: would raise on NaN
    assert js.plain(np.float64("nan")) is None and js.plain(np.int32(4)) == 4


def test_fingerprint_is_stable_and_order_free():
    a = js.fingerprint({"b": 1, "a": [1, 2]})
    assert a == js.fingerprint({"a": [1, 2], "b": 1}) and len(a) == 16
    assert a != js.fingerprint({"a": [2, 1], "b": 1})


def test_records_round_trip_and_keys():
    g = ReferenceGroup("ref/ü", "s3://b/r.png", [DistortedImage("d1", "d1.png", "jpeg", "9", "q=5", 10, {"t": 1})],
                       pairs=[["d1", "d1"]])  # fmt: skip
    assert g.key == group_key("ref/ü") and g.key.startswith("g-") and "/" not in g.key
    assert ReferenceGroup.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert group_key("a") != group_key("b")


def test_error_rows_never_carry_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "TOPSECRETKEY")
    e = ErrorRow.make(
        "load", "unreadable", "failed with TOPSECRETKEY", uri="s3://AKIA:pw@bucket/x.png", dist_id=3
    )
    row = e.to_dict("run-1")
    assert row["run_id"] == "run-1" and row["dist_id"] == "3" and row["uri"] == "s3://bucket/x.png"
    assert "TOPSECRETKEY" not in row["message"] and not math.isnan(len(row["message"]))
    with pytest.raises(TypeError):
        ErrorRow("load")  # every field is required


def test_markdown_tables_read_back_what_a_reader_sees():
    from pipeline.io import markdown as md

    name = "x|y<script> *a_b* [l](u) `c`\nz"
    doc = (
        "# Speed `jpeg`\n\n"
        + "\n".join(md.table(["codec", "bpp"], [[md.cell(name), md.num(0.25, 3)]]))
        + "\n"
    )
    assert "<script>" not in doc and "\nz" not in doc  # escaped on the way out, one line per row
    assert md.read_tables(doc) == {
        "Speed `jpeg`": [{"codec": "x|y<script> *a_b* [l](u) `c` z", "bpp": "0.250"}]
    }
