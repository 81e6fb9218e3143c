"""load_group: read, check, measure, tile, choose the pairs; one bad row never costs the group's other rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.image import metrics
from pipeline.io.records import ReferenceGroup
from pipeline.scoring.load import LoadedGroup, load_group

PATCH = 32


def load(group, **kw) -> LoadedGroup:
    return load_group(group, patch=PATCH, **kw)


def test_a_good_group_is_measured_tiled_and_paired(corpus, make_group):
    loaded = load(make_group(["d0", "d1", "d2"]))
    assert loaded.errors == []
    assert [d.dist_id for d in loaded.dists] == ["d0", "d1", "d2"]
    assert loaded.patches.shape == (4, 6, 3, PATCH, PATCH) and loaded.patches.dtype == np.uint8  # 2 x 3 grid
    assert loaded.has_patches and loaded.n_patches == 6
    assert loaded.pair_list() == [(0, 1), (0, 2), (1, 2)]  # strategy "all"
    d = loaded.dists[1]
    assert (d.width, d.height, d.bytes) == (96, 64, 2000)
    assert d.bpp == pytest.approx(2000 * 8 / (96 * 64))
    assert set(d.metrics) >= {"psnr", "psnr_y", "ms_ssim"} and d.metrics["psnr"] > 20
    assert d.extras == {"note": "n1"} and d.codec == "webp" and d.setting == "1"
    assert loaded.ref_id == "r1" and loaded.key == ReferenceGroup("r1", "x", []).key


def test_a_dict_of_the_same_shape_is_accepted(corpus, make_group):
    as_dict = make_group(["d0", "d1"]).to_dict()
    loaded = load(as_dict)
    assert [d.dist_id for d in loaded.dists] == ["d0", "d1"] and loaded.pair_list() == [(0, 1)]


def test_size_mismatch_is_that_rows_error(corpus, make_group):
    loaded = load(make_group(["d0", "small", "d1"]))
    assert [d.dist_id for d in loaded.dists] == ["d0", "d1"]
    [e] = loaded.errors
    assert (e.stage, e.dist_id, e.error, e.ref_id) == ("load", "small", "size_mismatch", "r1")
    assert "80x48" in e.message and "96x64" in e.message
    assert loaded.patches.shape[0] == 3 and loaded.pair_list() == [(0, 1)]


def test_a_missing_file_is_that_rows_error(corpus, make_group, tmp_path):
    loaded = load(make_group(["d0", "gone", "d1"], uris={"gone": str(tmp_path / "gone.png")}))
    assert [(e.dist_id, e.error) for e in loaded.errors] == [("gone", "missing")]
    assert [d.dist_id for d in loaded.dists] == ["d0", "d1"]


def test_a_bad_row_among_good_rows_loses_only_itself(corpus, make_group, tmp_path):
    """A NUL byte in a URI (ValueError inside open), a folder, an unreadable file: each is its own error row."""
    locked = tmp_path / "locked.png"
    locked.write_bytes(Path(corpus["d2"]).read_bytes())
    locked.chmod(0)
    uris = {"nul": str(tmp_path / "a\x00b.png"), "folder": str(tmp_path), "locked": str(locked)}
    loaded = load(make_group(["d0", "nul", "folder", "d1", "locked"], uris=uris))
    assert [d.dist_id for d in loaded.dists] == (
        ["d0", "d1", "locked"] if os.geteuid() == 0 else ["d0", "d1"]
    )
    codes = {e.dist_id: e.error for e in loaded.errors}
    assert codes["nul"] == "unreadable" and codes["folder"] == "read"
    if os.geteuid() != 0:  # root reads a file whatever its mode
        assert codes["locked"] == "permission"
    for e in loaded.errors:
        assert e.message and "\n" not in e.message and "\x00" not in e.message and "\x00" not in (e.uri or "")
    assert loaded.pair_list() == [
        (i, j) for i in range(len(loaded.dists)) for j in range(i + 1, len(loaded.dists))
    ]


def test_an_unexpected_failure_while_measuring_is_that_rows_error(corpus, make_group, monkeypatch):
    real = metrics.compute_all

    def flaky(stats, img, names=None):
        if img[0, 0, 0] == seen[0]:
            raise RuntimeError("boom\nsecond line")
        return real(stats, img, names)

    seen = [np.asarray(Image.open(corpus["d1"]))[0, 0, 0]]
    monkeypatch.setattr(metrics, "compute_all", flaky)
    loaded = load(make_group(["d0", "d1", "d2"]))
    bad = [e for e in loaded.errors if e.dist_id == "d1"]
    assert bad and bad[0].error == "internal" and "RuntimeError: boom second line" in bad[0].message
    assert "d1" not in [d.dist_id for d in loaded.dists] and len(loaded.dists) >= 1


@pytest.mark.parametrize("ref", ["missing", "nul", "folder"])
def test_a_failed_reference_fails_every_row(corpus, make_group, tmp_path, ref):
    where = {
        "missing": str(tmp_path / "none.png"),
        "nul": str(tmp_path / "r\x00.png"),
        "folder": str(tmp_path),
    }
    loaded = load(make_group(["d0", "d1"], uris={"ref": where[ref]}))
    assert loaded.dists == [] and not loaded.has_patches and loaded.patches.shape[0] == 0
    assert len(loaded.pairs) == 0
    assert [e.dist_id for e in loaded.errors] == ["d0", "d1"]
    assert all(e.error.startswith("reference_") and "reference unusable" in e.message for e in loaded.errors)


def test_a_reference_outside_the_allowed_roots_fails_every_row(corpus, make_group, tmp_path):
    loaded = load(make_group(["d0", "d1"]), allow_roots=[str(tmp_path / "elsewhere")])
    assert {e.error for e in loaded.errors} == {"outside_roots"} and len(loaded.errors) == 2
    assert loaded.errors[0].message.startswith("reference ")


def test_a_row_outside_the_allowed_roots_is_that_rows_error(corpus, make_group, tmp_path):
    loaded = load(make_group(["d0", "out"], uris={"out": "/etc/hostname"}), allow_roots=[str(tmp_path)])
    assert [(e.dist_id, e.error) for e in loaded.errors] == [("out", "outside_roots")]
    assert [d.dist_id for d in loaded.dists] == ["d0"]


def test_explicit_pairs_become_index_pairs(corpus, make_group):
    pairs = [["d2", "d0"], ["d1", "d2"], ["d0", "gone"], ["d1", "d1"]]
    loaded = load(make_group(["d0", "d1", "d2"], pairs=pairs))
    assert loaded.pair_list() == [(2, 0), (1, 2)]  # orientation kept; unknown ids and self-pairs left out
    assert loaded.pairs.dtype == np.int64 and loaded.pairs.shape == (2, 2)


def test_explicit_pairs_skip_images_that_failed(corpus, make_group):
    loaded = load(make_group(["d0", "small", "d1"], pairs=[["d0", "small"], ["d1", "d0"]]))
    assert loaded.pair_list() == [(1, 0)]


def test_the_strategy_comes_from_the_caller(corpus, make_group):
    loaded = load(make_group(["d0", "d1", "d2"]), pairs="matched", match_tolerance=0.0)
    assert loaded.pair_list() == []
    assert loaded.has_patches  # images are still measured and written


def test_no_usable_image_means_no_patches(corpus, make_group):
    loaded = load(make_group(["small"]))
    assert loaded.dists == [] and loaded.patches.shape == (0, 0, 3, PATCH, PATCH) and len(loaded.pairs) == 0


def hostname_bytes() -> bytes:
    try:
        return Path("/etc/hostname").read_bytes().strip()
    except OSError:
        return b""


@pytest.mark.parametrize("what", ["ref", "dist"])
def test_a_symlink_out_of_the_allowed_folder_is_refused_unread(corpus, make_group, tmp_path, what):
    """The check is on what a path resolves to: a link inside the folder to /etc/hostname is outside, and
    nothing of the file reaches a message."""
    link = tmp_path / "innocent.png"
    link.symlink_to("/etc/hostname")
    name = "ref" if what == "ref" else "d1"
    loaded = load(make_group(["d0", "d1"], uris={name: str(link)}), allow_roots=[str(tmp_path)])
    if what == "ref":
        assert loaded.dists == [] and {e.error for e in loaded.errors} == {"outside_roots"}
    else:
        assert [(e.dist_id, e.error) for e in loaded.errors] == [("d1", "outside_roots")]
        assert [d.dist_id for d in loaded.dists] == ["d0"]
    secret = hostname_bytes().decode("utf-8", "replace")
    for e in loaded.errors:
        assert "lies outside the allowed locations" in e.message
        assert not secret or len(secret) < 4 or secret not in e.message


def test_file_uris_and_links_are_resolved_before_the_check(corpus, make_group, tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "to-d1.png").symlink_to(corpus["d1"])  # a link inside the root to a file outside it
    uris = {
        "d0": "file://" + corpus["d0"],
        "d1": str(inner / "to-d1.png"),
        "esc": f"file://{inner}/../../../etc/hostname",
    }
    loaded = load(make_group(["d0", "d1", "esc"], uris=uris), allow_roots=[str(tmp_path)])
    assert [d.dist_id for d in loaded.dists] == ["d0", "d1"]  # d1's target lies in tmp_path too
    assert [(e.dist_id, e.error) for e in loaded.errors] == [("esc", "outside_roots")]
    loaded = load(make_group(["d0", "d1"], uris=uris), allow_roots=[str(inner)])
    assert {e.dist_id: e.error for e in loaded.errors} == {"d0": "outside_roots", "d1": "outside_roots"}


def test_an_allowed_root_given_as_a_symlink_allows_what_it_points_to(corpus, make_group, tmp_path):
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    alias.symlink_to(tmp_path, target_is_directory=True)
    try:
        via_alias = {n: str(alias / Path(u).name) for n, u in corpus.items()}
        for roots in ([str(alias)], [str(tmp_path)]):
            for uris in (via_alias, corpus):
                loaded = load(make_group(["d0", "d1"], uris=uris), allow_roots=roots)
                assert loaded.errors == [] and [d.dist_id for d in loaded.dists] == ["d0", "d1"]
        outside = load(make_group(["d0"], uris={"d0": "/etc/hostname"}), allow_roots=[str(alias)])
        assert [e.error for e in outside.errors] == ["outside_roots"]
    finally:
        alias.unlink()


def save_as(path: Path, img, fmt: str = "PNG", **kw) -> str:
    img.save(path, format=fmt, **kw)
    return str(path)


def test_conversions_are_recorded_per_image_and_for_the_reference(corpus, make_group, tmp_path):
    rgb = np.asarray(Image.open(corpus["d1"]))
    grey = save_as(tmp_path / "grey.png", Image.fromarray(rgb).convert("L"))
    opaque = save_as(tmp_path / "opaque.png", Image.fromarray(rgb).convert("RGBA"))
    sixteen = save_as(tmp_path / "16.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    loaded = load(make_group(["d0", "grey", "opaque", "sixteen"], uris={"grey": grey, "opaque": opaque,
                                                                        "sixteen": sixteen}))  # fmt: skip
    assert loaded.errors == []
    got = {d.dist_id: d.conversions for d in loaded.dists}
    assert got == {"d0": "", "grey": "greyscale->RGB", "opaque": "opaque alpha channel dropped",
                   "sixteen": "greyscale->RGB; 16->8 bits"}  # fmt: skip
    assert {d.ref_conversions for d in loaded.dists} == {""}
    again = [type(d).from_row(d.to_row()) for d in loaded.dists]
    assert [d.conversions for d in again] == list(got.values())
    ref_grey = save_as(tmp_path / "ref-grey.png", Image.open(corpus["ref"]).convert("L"))
    loaded = load(make_group(["d0"], uris={"ref": ref_grey}))
    assert [d.ref_conversions for d in loaded.dists] == ["greyscale->RGB"]


def with_alpha(rgb: np.ndarray, transparent_rows: int) -> Image.Image:
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:transparent_rows] = 0
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def test_transparency_must_match_the_references(corpus, make_group, tmp_path):
    """Both sides are composited on white: an image with transparency is compared only with the same
    transparency; an opaque image of a transparent reference is the reference as displayed, and is scored."""
    ref_rgb = np.asarray(Image.open(corpus["ref"]))
    d_rgb = np.asarray(Image.open(corpus["d1"]))
    uris = {
        "ref": save_as(tmp_path / "ref-a.png", with_alpha(ref_rgb, 8)),
        "same": save_as(tmp_path / "same.png", with_alpha(d_rgb, 8)),
        "other": save_as(tmp_path / "other.png", with_alpha(d_rgb, 20)),
        "opaque": corpus["d2"],
    }
    loaded = load(make_group(["same", "other", "opaque"], uris=uris))
    assert [d.dist_id for d in loaded.dists] == ["same", "opaque"]
    [e] = loaded.errors
    assert (e.dist_id, e.error) == ("other", "alpha_mismatch") and "transparency differs" in e.message
    assert loaded.dists[0].conversions == "alpha composited on white"
    assert {d.ref_conversions for d in loaded.dists} == {"alpha composited on white"}
    plain = load(make_group(["same", "d0"], uris={"same": uris["same"]}))
    assert [(e.dist_id, e.error) for e in plain.errors] == [("same", "alpha_mismatch")]
    assert [d.dist_id for d in plain.dists] == ["d0"]


def test_an_animation_is_refused(corpus, make_group, tmp_path):
    frames = [Image.open(corpus[n]).convert("RGB") for n in ("d0", "d1", "d2")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    loaded = load(make_group(["d0", "anim", "d1"], uris={"anim": str(gif)}))
    assert [(e.dist_id, e.error) for e in loaded.errors] == [("anim", "animated")]
    assert "animation of 3 frames" in loaded.errors[0].message
    assert [d.dist_id for d in loaded.dists] == ["d0", "d1"]
    loaded = load(make_group(["d0", "d1"], uris={"ref": str(gif)}))
    assert loaded.dists == [] and {e.error for e in loaded.errors} == {"reference_animated"}


def test_an_undecodable_row_names_no_content(corpus, make_group, tmp_path):
    leak = tmp_path / "leak.png"
    leak.write_bytes(b"password=Tr0ub4dor&3 and more private text\n")
    loaded = load(make_group(["d0", "leak"], uris={"leak": str(leak)}))
    [e] = loaded.errors
    assert e.error == "not_an_image" and "Tr0ub4dor" not in e.message and "password" not in e.message
    assert "starts like text" in e.message
