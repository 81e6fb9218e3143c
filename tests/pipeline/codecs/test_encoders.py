"""The encoders beside libjpeg-turbo (jpegli, MozJPEG, HEIC), encoder options, bpp targets, and the mucped23 study's
files regenerated: real codecs, Pillow as the independent decoder, sha256s recorded by the study's regeneration."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.codecs import get_codec, parse_spec
from pipeline.image import samples
from pipeline.sweep.encode import BppUnreachable, knob_candidates, search_bpp

MUCPED23 = Path(__file__).parents[3] / ".." / "shared" / "data" / "mucped23"
needs_mucped23 = pytest.mark.skipif(
    not (MUCPED23 / "reproduced_bytes.csv").exists(),
    reason=f"the mucped23 data is not beside the repository ({MUCPED23.resolve()})",
)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return samples.load_sample("coffee", max_side=128)


def pillow(data: bytes) -> Image.Image:
    import pillow_heif

    pillow_heif.register_heif_opener()
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def bpp(data: bytes, rgb: np.ndarray) -> float:
    return len(data) * 8 / (rgb.shape[0] * rgb.shape[1])


@pytest.mark.parametrize(("name", "fmt"), [("jpegli", "JPEG"), ("mozjpeg", "JPEG"), ("heic", "HEIF")])
def test_new_codecs_round_trip_and_pillow_reads_them(name, fmt, photo):
    codec = get_codec(name)
    for sub in ("444", "422", "420"):
        data = codec.encode(photo, 60, {"subsampling": sub})
        img = pillow(data)
        assert img.format == fmt and img.size == (photo.shape[1], photo.shape[0])
        decoded = codec.decode(data)
        assert np.array_equal(decoded, np.asarray(img.convert("RGB")))
        assert np.abs(decoded.astype(int) - photo).mean() < 8
    assert codec.encode(photo, 60, {"subsampling": "444"}) != codec.encode(photo, 60, {"subsampling": "420"})
    assert codec.encode(photo, 60) == codec.encode(photo, 60, {"subsampling": "420"})


def test_jpeg_family_options_reach_the_bitstream(photo):
    def layout(data: bytes) -> tuple[int, list[tuple[int, int]]]:
        img = pillow(data)
        return img.info.get("progressive", 0), img.layer and [(h, v) for _, h, v, _ in img.layer]

    jpeg = get_codec("jpeg")
    assert layout(jpeg.encode(photo, 70))[1] == [(2, 2), (1, 1), (1, 1)]  # today's default: 4:2:0 baseline
    assert layout(jpeg.encode(photo, 70))[0] == 0
    assert layout(jpeg.encode(photo, 70, {"subsampling": "422", "progressive": "1"})) == (
        1,
        [(2, 1), (1, 1), (1, 1)],
    )
    assert len(jpeg.encode(photo, 70, {"optimize": "0"})) > len(jpeg.encode(photo, 70))
    assert layout(get_codec("mozjpeg").encode(photo, 70, {"subsampling": "422"}))[1] == [
        (2, 1),
        (1, 1),
        (1, 1),
    ]
    jpegli = get_codec("jpegli")
    assert layout(jpegli.encode(photo, 70, {"subsampling": "444"})) == (1, [(1, 1)] * 3)
    assert layout(jpegli.encode(photo, 70, {"progressive": "0"}))[0] == 0
    assert jpegli.encode(photo, 70, {"aq": "0"}) != jpegli.encode(photo, 70)
    jxl = get_codec("jxl")
    assert jxl.encode(photo, 2, {"effort": "3"}) != jxl.encode(photo, 2)


# --- the spec: options and targets -------------------------------------------------------------------------


def test_options_cross_the_knob_values():
    settings = parse_spec("jpeg:q=55,75;subsampling=420,444 jpegli:q=70 jxl:d=1,2;effort=7")
    assert [(s.codec, s.text) for s in settings] == [
        ("jpeg", "q=55;subsampling=420"),
        ("jpeg", "q=75;subsampling=420"),
        ("jpeg", "q=55;subsampling=444"),
        ("jpeg", "q=75;subsampling=444"),
        ("jpegli", "q=70"),
        ("jxl", "d=1;effort=7"),
        ("jxl", "d=2;effort=7"),
    ]
    assert settings[2].option_values == {"subsampling": "444"}
    assert settings[2].slug == "q55_subsampling444"
    two = parse_spec("jpeg:q=50;subsampling=444,420;progressive=0,1")
    assert len(two) == 4 and {s.option_values["progressive"] for s in two} == {"0", "1"}
    # the options in the codec's order whatever the order typed; aliases and 4:2:2 spelling
    assert parse_spec("jpeg:optimize=1;q=80;chroma=4:2:2")[0].text == "q=80;subsampling=422;optimize=1"
    # options alone: the default knob values
    assert [s.value for s in parse_spec("mozjpeg:subsampling=444")] == list(
        get_codec("mozjpeg").default_values
    )


def test_old_spec_strings_give_the_same_settings():
    settings = parse_spec("jpeg:q=20,40 webp:q=30 avif:q=50 jp2:ratio=20 jxl:d=1.0")
    assert [(s.codec, s.knob, s.value, s.text, s.slug, s.options) for s in settings] == [
        ("jpeg", "q", 20, "q=20", "q20", ()),
        ("jpeg", "q", 40, "q=40", "q40", ()),
        ("webp", "q", 30, "q=30", "q30", ()),
        ("avif", "q", 50, "q=50", "q50", ()),
        ("jp2", "ratio", 20.0, "ratio=20", "ratio20", ()),
        ("jxl", "d", 1.0, "d=1.0", "d1.0", ()),
    ]
    assert all(s.target_bpp is None for s in settings)


def test_spec_files_take_options_and_targets(tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text('[jpeg]\nq = [55]\nsubsampling = [420, 444]\n\n[avif]\nbpp = 0.15\nspeed = "4"\n')
    inline = parse_spec("jpeg:q=55;subsampling=420,444 avif:bpp=0.15;speed=4")
    assert [(s.codec, s.text) for s in parse_spec(str(toml))] == [(s.codec, s.text) for s in inline]
    target = inline[-1]
    assert (target.knob, target.target_bpp, target.text) == ("bpp", 0.15, "bpp=0.15;speed=4")


def test_same_encoding_is_one_setting():
    assert [s.text for s in parse_spec("jpeg:q=50 jpeg:q=50;subsampling=420 jpeg:q=50;subsampling=444")] == [
        "q=50",
        "q=50;subsampling=444",
    ]


# --- bpp targets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "target"), [("jpeg", 0.9), ("jpegli", 1.2), ("jxl", 0.8), ("jp2", 0.5)])
def test_bpp_target_takes_the_best_quality_at_or_under_it(name, target, photo):
    codec = get_codec(name)
    options = codec.resolve()
    found = search_bpp(codec, photo, target, options)
    assert bpp(found.data, photo) <= target
    assert found.data == codec.encode(photo, found.value, options)
    candidates = knob_candidates(codec)
    i = candidates.index(found.value)
    assert bpp(codec.encode(photo, candidates[i + 1], options), photo) > target  # one step better overshoots
    if name == "jpeg":  # the whole ladder: nothing at or under the target is of higher quality
        under = [q for q in range(1, 101) if bpp(codec.encode(photo, q), photo) <= target]
        assert found.value == max(under)


def test_unreachable_target_says_what_was_reached(photo):
    with pytest.raises(BppUnreachable, match=r"lowest quality, q=1, gives 0\.\d+ bpp"):
        search_bpp(get_codec("jpeg"), photo, 0.01, get_codec("jpeg").resolve())


# --- mucped23: the study's encodings regenerated ------------------------------------------------------------


def _methods() -> dict[str, dict]:
    with open(MUCPED23 / "methods.csv") as f:
        return {r["method"]: r for r in csv.DictReader(f)}


def _reproduced() -> list[dict]:
    with open(MUCPED23 / "reproduced_bytes.csv") as f:
        return list(csv.DictReader(f))


def _original(name: str) -> np.ndarray:
    return np.asarray(Image.open(MUCPED23 / "refs" / f"{name}.png").convert("RGB"))


def _encode(method: dict, rgb: np.ndarray) -> bytes:
    codec = {"libjpeg-turbo": "jpeg", "mozjpeg": "mozjpeg", "jpegli": "jpegli"}[method["family"]]
    (s,) = parse_spec(f"{codec}:q={method['quality']};subsampling={method['subsampling']}")
    return get_codec(codec).encode(rgb, s.value, s.option_values)


@needs_mucped23
def test_libjpeg_turbo_and_mozjpeg_files_equal_the_studys_regeneration():
    methods = _methods()
    rows = _reproduced()
    names = sorted({r["originalName"] for r in rows})[:3]
    checked = set()
    for r in rows:
        if r["originalName"] in names:
            data = _encode(methods[r["method"]], _original(r["originalName"]))
            assert hashlib.sha256(data).hexdigest() == r["jpeg_sha256"], (r["method"], r["originalName"])
            checked.add(methods[r["method"]]["family"])
    assert checked == {"libjpeg-turbo", "mozjpeg"}


@needs_mucped23
def test_jpegli_matches_the_studys_mean_bpp_after_the_subset_correction():
    """The study's means cover 49 originals, 33 are here: the bit-exact families give the 33/49 ratio as a
    function of ln(bpp); jpegli's 33-image mean must land within 0.5 % of study mean x that ratio."""
    methods = _methods()
    sizes: dict[str, list[int]] = {}
    for r in _reproduced():
        sizes.setdefault(r["method"], []).append(int(r["bytes"]))
    exact = [m for m in sizes if len(sizes[m]) == 33]
    study = {m: float(methods[m]["mean_bpp_all_49_originals"]) for m in methods}
    ours = {m: np.mean(sizes[m]) * 8 / (512 * 512) for m in exact}
    slope, intercept = np.polyfit([math.log(study[m]) for m in exact], [ours[m] / study[m] for m in exact], 1)
    originals = [_original(p.stem) for p in sorted((MUCPED23 / "refs").glob("*.png"))]
    assert len(originals) == 33
    for name in ("jpegli-q55-yuv444", "jpegli-q70-yuv420", "jpegli-q85-yuv444", "jpegli-q95-yuv420"):
        mean = np.mean([bpp(_encode(methods[name], rgb), rgb) for rgb in originals])
        expected = study[name] * (intercept + slope * math.log(study[name]))
        assert abs(mean / expected - 1) < 0.005, (name, mean, expected)


@needs_mucped23
def test_jpegli_is_deterministic_and_equal_to_the_recorded_file():
    rgb = _original("1025469")
    data = _encode(_methods()["jpegli-q70-yuv444"], rgb)
    assert len(data) == 20104
    assert (
        hashlib.sha256(data).hexdigest() == "7ef0b5ba938626c1297d4e6c9341ee52d013a2b5bd6ae8d2ce565431b4dff0c4"
    )
    assert _encode(_methods()["jpegli-q70-yuv444"], rgb) == data
