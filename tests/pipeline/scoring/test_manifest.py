"""Manifest validation: whole-manifest problems are usage errors; row problems become error rows."""

import pytest

from pipeline.scoring import manifest


def write(tmp_path, text, name="m.csv"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


HEADER = "ref_id,ref_uri,dist_id,dist_uri,codec,codec_version,setting,bytes\n"


def test_reads_resolves_relative_uris_and_carries_extras(tmp_path):
    uri = write(
        tmp_path,
        "ref_id,ref_uri,dist_id,dist_uri,codec,bytes,team\nr1,refs/r1.png,d1,img/d1.png,jpeg,100,x\n",
    )
    m = manifest.read_manifest(uri)
    row = m.rows.iloc[0]
    assert row["ref_uri"] == str(tmp_path / "refs" / "r1.png")
    assert row["dist_uri"] == str(tmp_path / "img" / "d1.png")
    assert row["bytes"] == 100 and m.extra_columns == ["team"]
    assert m.errors == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("ref_id,ref_uri,dist_uri,codec\nr,a.png,b.png,jpeg\n", "missing required column.*dist_id"),
        (HEADER, "no rows"),
        (
            HEADER + "r,a.png,d1,b.png,jpeg,,,1\nr,a.png,d1,c.png,jpeg,,,2\n",
            "duplicate dist_id.*'d1' on rows 2, 3",
        ),
        (b"ref_id,ref_uri,dist_id,dist_uri,codec\nr,\xff\xfe.png,d,b.png,jpeg\n", "not UTF-8"),
        (HEADER + 'r,"a.png,d1,b.png,jpeg,,,1\n', "CSV"),
    ],
)
def test_unusable_manifests(tmp_path, text, match):
    with pytest.raises(manifest.ManifestError, match=match):
        manifest.read_manifest(write(tmp_path, text))


def test_row_errors_do_not_stop_other_rows(tmp_path):
    text = HEADER + "r,a.png,d1,,jpeg,,,1\nr,a.png,d2,c.png,jpeg,,,abc\nr,a.png,d3,d.png,jpeg,,,5\n"
    m = manifest.read_manifest(write(tmp_path, text))
    assert list(m.rows["dist_id"]) == ["d3"]
    codes = sorted(e["error"] for e in m.errors)
    assert codes == ["bad_value", "missing_value"]
    assert any("empty dist_uri" in e["message"] for e in m.errors)


def test_groups_keep_manifest_order(tmp_path):
    text = HEADER + "r2,b.png,x1,1.png,jpeg,,,1\nr1,a.png,y1,2.png,webp,,,2\nr2,b.png,x2,3.png,jpeg,,,3\n"
    gs = manifest.groups(manifest.read_manifest(write(tmp_path, text)))
    assert [g.ref_id for g in gs] == ["r2", "r1"]
    assert [d.dist_id for d in gs[0].dists] == ["x1", "x2"]
    assert gs[0].key == manifest.group_key("r2") != gs[1].key


def test_within_roots():
    assert manifest.within_roots("s3://b/runs/x/a.png", ["s3://b/runs"])
    assert not manifest.within_roots("s3://b/runs/../secret/a.png", ["s3://b/runs"])
    assert not manifest.within_roots("s3://b/runs2/a.png", ["s3://b/runs"])
    assert not manifest.within_roots("/etc/passwd", ["s3://b/runs"])
