"""Row isolation, as a property: whatever a manifest's bad rows hold, every good row is measured exactly once and
every bad row is exactly one error row (of the manifest or of the load stage).

Generated manifests (CSV or Parquet) mix good rows with bad values of many kinds: odd bytes and control characters
in ids and URIs, empty and huge values, non-UTF-8 bytes, folders, symlinks out of the allowed folder, ``..`` and
``file://`` escapes, files that are not images, images of the wrong size, animations, transparency that differs
from the reference's, wrong column types and references that cannot be used. The path is the driver's and the load
tasks' without Ray: read_manifest -> groups -> load_group. Whole-manifest faults (a column named twice, a required
column missing, a dist_id given twice) are one :class:`ManifestError` each.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.scoring.load import load_group
from pipeline.scoring.manifest import MANIFEST_COLUMNS, ManifestError, groups, read_manifest

PATCH = 32
SECRET = "Private-Content-9d2e"  # inside a text file given as an image: must never reach a message
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def png(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(arr, mode).save(path, format="PNG")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The allowed folder: a reference, good distorted images, and files of every bad kind."""
    base = tmp_path_factory.mktemp("isolation")
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    png(base / "ref.png", ref)
    (base / "sub").mkdir()
    png(base / "sub" / "ref-b.png", ref)
    for k in range(4):
        noisy = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
        png(base / f"good{k}.png", noisy)
    (base / "link-in.png").symlink_to(base / "good1.png")  # a link that stays inside: a good row
    (base / "link-out.png").symlink_to("/etc/hostname")
    (base / "link-dir").symlink_to("/etc", target_is_directory=True)
    png(base / "small.png", ref[:48, :80])
    (base / "empty.png").write_bytes(b"")
    (base / "page.png").write_bytes(b"<!DOCTYPE html><html><body>" + SECRET.encode() + b"</body></html>")
    (base / "text.png").write_bytes(f"token={SECRET}\n".encode())
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="PNG")
    (base / "trunc.png").write_bytes(buf.getvalue()[:200])
    frames = [Image.fromarray(np.roll(ref, k, axis=0)) for k in range(3)]
    frames[0].save(base / "anim.gif", save_all=True, append_images=frames[1:])
    alpha = np.dstack([ref, np.where(np.arange(64)[:, None] < 8, 0, 255).repeat(96, 1).astype(np.uint8)])
    png(base / "alpha.png", alpha, "RGBA")
    (base / "folder").mkdir()
    return base


# A good distorted image, spelled in the ways a manifest may spell it.
GOOD_URIS = ["good0.png", "./good1.png", "sub/../good2.png", "{base}/good3.png", "file://{base}/good0.png",
             "link-in.png", "  good2.png  "]  # fmt: skip

# kind -> (dist_uri or None for a good one, codes the row may end with)
BAD_URIS = {
    "empty_uri": ("", {"missing_value"}),
    "blank_uri": ("   ", {"missing_value"}),
    "nul_uri": ("go\x00od0.png", {"unreadable"}),
    "control_uri": ("bad\x1b[31m\x07.png", {"missing"}),
    "missing": ("nothere.png", {"missing"}),
    "huge_uri": ("x" * 5000 + ".png", {"read", "missing", "unreadable"}),
    "folder": ("folder", {"read"}),
    "link_out": ("link-out.png", {"outside_roots"}),
    "link_dir": ("link-dir/hostname", {"outside_roots"}),
    "climb": ("../../../../etc/hostname", {"outside_roots"}),
    "file_scheme": ("file:///etc/hostname", {"outside_roots"}),
    "other_scheme": ("http://user:pw@example.invalid/x.png", {"outside_roots"}),
    "empty_file": ("empty.png", {"empty"}),
    "html": ("page.png", {"not_an_image"}),
    "text": ("text.png", {"not_an_image"}),
    "truncated": ("trunc.png", {"corrupt", "not_an_image"}),
    "wrong_size": ("small.png", {"size_mismatch"}),
    "animated": ("anim.gif", {"animated"}),
    "alpha": ("alpha.png", {"alpha_mismatch"}),
}
BAD_BYTES = {"letters": "abc", "negative": "-1", "fraction": "1.5", "huge": "1e30", "infinite": "inf",
             "past_int64": str(2**63)}  # fmt: skip
BAD_FIELDS = ("empty_dist_id", "empty_ref_id", "empty_codec", "blank_codec")
BAD_REFS = {"ref_missing": "noref.png", "ref_html": "page.png", "ref_out": "link-out.png", "ref_small": "small.png",
            "ref_animated": "anim.gif", "ref_folder": "folder"}  # fmt: skip
REF_CODES = {"ref_missing": "reference_missing", "ref_html": "reference_not_an_image", "ref_out": "outside_roots",
             "ref_small": "size_mismatch", "ref_animated": "reference_animated", "ref_folder": "reference_read"}  # fmt: skip
KINDS = ["good", "good_weird_id", *BAD_URIS, *(f"bytes_{k}" for k in BAD_BYTES), *BAD_FIELDS, *BAD_REFS]

# characters a cell may carry: control characters, NUL, quotes, separators, non-ASCII, lone surrogates excluded
ODD = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from("\x00\x01\x1b\t\",;'\\ "),
    max_size=12,
)


@dataclass
class Row:
    kind: str
    cells: dict
    good: bool
    codes: set[str]


def make_row(i: int, kind: str, odd: str, pick: int, base: Path) -> Row:
    cells = {"ref_id": "r1", "ref_uri": "ref.png" if pick % 2 else "{base}/ref.png", "dist_id": f"d{i}",
             "dist_uri": GOOD_URIS[pick % len(GOOD_URIS)], "codec": "jpeg" if pick % 3 else "webp",
             "codec_version": odd if pick % 4 == 0 else "1", "setting": odd, "bytes": str(100 + i)}  # fmt: skip
    if pick % 5 == 0:
        cells["ref_id"], cells["ref_uri"] = "r2", "sub/ref-b.png"
    good, codes = False, set()
    if kind == "good":
        good = True
    elif kind == "good_weird_id":
        cells["dist_id"] = f"d{i}:{odd}"  # unique by its prefix whatever the rest holds
        cells["ref_id"] = f"r-{odd}"
        cells["ref_uri"] = "ref.png"  # one ref_id, one ref_uri
        good = True
    elif kind in BAD_URIS:
        cells["dist_uri"], codes = BAD_URIS[kind]
    elif kind.startswith("bytes_"):
        cells["bytes"], codes = BAD_BYTES[kind.removeprefix("bytes_")], {"bad_value"}
    elif kind == "empty_dist_id":
        cells["dist_id"], codes = "", {"missing_value"}
    elif kind == "empty_ref_id":
        cells["ref_id"], codes = " ", {"missing_value"}
    elif kind in ("empty_codec", "blank_codec"):
        cells["codec"], codes = ("" if kind == "empty_codec" else "\t "), {"missing_value"}
    elif kind in BAD_REFS:
        cells["ref_id"], cells["ref_uri"] = kind, BAD_REFS[kind]
        codes = {REF_CODES[kind]}
    cells = {k: v.replace("{base}", str(base)) if isinstance(v, str) else v for k, v in cells.items()}
    return Row(kind, cells, good, codes)


def write_manifest(base: Path, rows: list[Row], fmt: str, variant: str, name: str = "m") -> str:
    df = pd.DataFrame([r.cells for r in rows], columns=MANIFEST_COLUMNS)
    if fmt == "csv":
        uri = str(base / f"{name}.csv")
        df.to_csv(uri, index=False)
        return uri
    uri = str(base / f"{name}.parquet")
    columns = {c: pa.array([None if pd.isna(v) else v for v in df[c]], pa.string()) for c in df.columns}
    if variant == "binary_uri":  # URIs as a binary column: one is not UTF-8 at all
        columns["dist_uri"] = pa.array([u.encode("utf-8") for u in df["dist_uri"]], pa.binary())
    if variant == "int_bytes":  # bytes as integers where they are integers, the others null
        nums = pd.to_numeric(df["bytes"], errors="coerce")
        ok = nums.notna() & (nums == nums.round()) & (nums.abs() < 2**62)
        columns["bytes"] = pa.array(
            [int(v) if k else None for v, k in zip(nums, ok, strict=True)], pa.int64()
        )
    pq.write_table(pa.table(columns), uri)
    return uri


def run(uri: str, base: Path):
    """Everything the driver and the load tasks produce: manifest errors, measured images, load errors."""
    manifest = read_manifest(uri)
    loaded = [load_group(g, patch=PATCH, allow_roots=[str(base)]) for g in groups(manifest)]
    measured = [d.dist_id for lg in loaded for d in lg.dists]
    errors = list(manifest.errors) + [e.to_dict() for lg in loaded for e in lg.errors]
    return measured, errors


def check(rows: list[Row], measured: list[str], errors: list[dict]) -> None:
    good = [r.cells["dist_id"].strip() for r in rows if r.good]
    assert sorted(measured) == sorted(good), "every good row measured, once"
    assert len(errors) == sum(not r.good for r in rows), "one error row per bad row"
    by_id: dict[str, list[dict]] = {}
    for e in errors:
        by_id.setdefault(e["dist_id"], []).append(e)
    for r in rows:
        if r.good:
            assert r.cells["dist_id"].strip() not in by_id, (r.kind, by_id.get(r.cells["dist_id"].strip()))
            continue
        if r.kind == "empty_dist_id":
            continue
        [e] = by_id[r.cells["dist_id"].strip()]
        assert e["error"] in r.codes, (r.kind, e)
    assert len(by_id.get(None, [])) == sum(r.kind == "empty_dist_id" for r in rows)
    hostname = (
        Path("/etc/hostname").read_text(errors="replace").strip() if os.path.exists("/etc/hostname") else ""
    )
    for e in errors:
        text = f"{e['message']} {e['uri']}"
        assert e["message"] and "\n" not in text and "\x00" not in text, e
        assert SECRET not in text and "pw@" not in text, e
        assert len(hostname) < 6 or hostname not in e["message"], e


@st.composite
def manifests(draw):
    n = draw(st.integers(1, 24))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=n, max_size=n))
    if "good" not in kinds:
        kinds[draw(st.integers(0, n - 1))] = "good"
    odds = draw(st.lists(ODD, min_size=n, max_size=n))
    picks = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    fmt = draw(st.sampled_from(["csv", "parquet"]))
    variant = draw(st.sampled_from(["plain", "binary_uri", "int_bytes"])) if fmt == "parquet" else "plain"
    return kinds, odds, picks, fmt, variant


@SETTINGS
@given(spec=manifests())
def test_every_good_row_is_measured_once_and_every_bad_row_is_one_error(folder, spec):
    kinds, odds, picks, fmt, variant = spec
    if fmt == "csv":  # a CSV value cannot hold a newline (that is a malformed file, refused as a whole)
        odds = [o.replace("\n", " ").replace("\r", " ") for o in odds]
    rows = [make_row(i, k, o, p, folder) for i, (k, o, p) in enumerate(zip(kinds, odds, picks, strict=True))]
    if variant == "int_bytes":  # a column of integers holds no "abc": those rows become good ones
        rows = [Row(r.kind, {**r.cells, "bytes": None}, True, set()) if r.kind.startswith("bytes_") else r
                for r in rows]  # fmt: skip
    if variant == "binary_uri" and rows[-1].good is False and rows[-1].kind in BAD_URIS:
        rows[-1] = Row("not_utf8", {**rows[-1].cells}, False, {"bad_value"})
    uri = write_manifest(folder, rows, fmt, variant)
    if variant == "binary_uri" and rows[-1].kind == "not_utf8":
        table = pq.read_table(uri)
        uris = table.column("dist_uri").to_pylist()
        uris[-1] = b"\xff\xfe" + SECRET.encode()
        pq.write_table(table.set_column(table.schema.get_field_index("dist_uri"), "dist_uri",
                                        pa.array(uris, pa.binary())), uri)  # fmt: skip
    measured, errors = run(uri, folder)
    check(rows, measured, errors)


@SETTINGS
@given(
    n=st.integers(1, 6),
    fault=st.sampled_from(["dup_required", "dup_extra", "missing_required", "dup_dist_id"]),
    col=st.sampled_from(["ref_id", "ref_uri", "dist_id", "dist_uri", "codec"]),
    fmt=st.sampled_from(["csv", "parquet"]),
)
def test_a_whole_manifest_fault_is_one_manifest_error(folder, n, fault, col, fmt):
    rows = [make_row(i, "good", "", i, folder) for i in range(n)]
    names = list(MANIFEST_COLUMNS)
    values = [[r.cells[c] for c in names] for r in rows]
    if fault == "dup_required":
        names.append(col)
        values = [[*v, v[MANIFEST_COLUMNS.index(col)]] for v in values]
    elif fault == "dup_extra":
        names += ["note", "note"]
        values = [[*v, "a", "b"] for v in values]
    elif fault == "missing_required":
        k = names.index(col)
        names.pop(k)
        values = [v[:k] + v[k + 1 :] for v in values]
    else:
        values.append(list(values[0]))
        values[-1][names.index("dist_uri")] = "good3.png"
    uri = str(folder / f"fault.{fmt}")
    if fmt == "csv":
        with open(uri, "w", newline="") as f:
            f.write(",".join(names) + "\n")
            f.writelines(",".join(map(str, v)) + "\n" for v in values)
    else:
        arrays = [pa.array([v[k] for v in values], pa.string()) for k in range(len(names))]
        pq.write_table(pa.Table.from_arrays(arrays, names=names), uri)
    with pytest.raises(ManifestError) as e:
        read_manifest(uri)
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    expected = {"dup_required": "more than once", "dup_extra": "'note'", "missing_required": "missing required",
                "dup_dist_id": "duplicate dist_id"}  # fmt: skip
    assert expected[fault] in message, message


def test_every_kind_is_generated():
    """The generator covers every kind listed in the module docstring (a guard against a kind left unused)."""
    assert len(KINDS) >= 35 and len(set(KINDS)) == len(KINDS)
