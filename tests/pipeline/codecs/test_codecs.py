"""Codecs, the codec spec and the bundled sample photos.

Every registered codec is exercised for real on a real photo: round trip at odd sizes, the bitstream's own
signature, quality rising with the setting (PSNR from scikit-image), and its version matching what the library
itself reports.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from pipeline.codecs import DEFAULT_SPEC, REGISTRY, SpecError, get_codec, list_codecs, parse_spec
from pipeline.image import samples
from pipeline.io import schemas

CODEC_NAMES = list_codecs()

# Low to high quality for each codec, in the codec's own knob.
QUALITY_LADDER = {
    "jpeg": [10, 30, 60, 90],
    "webp": [10, 30, 60, 90],
    "avif": [10, 30, 60, 90],
    "jp2": [100, 40, 15, 5],
    "jxl": [6, 3, 1.5, 0.5],
    "heic": [10, 30, 60, 90],
    "jpegli": [10, 30, 60, 90],
    "mozjpeg": [10, 30, 60, 90],
}

# The signature each real bitstream starts with (container files carry the brand at offset 4).
SIGNATURES = {
    "jpeg": (0, b"\xff\xd8\xff"),
    "webp": (8, b"WEBP"),
    "avif": (4, b"ftypavif"),
    "jp2": (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),
    "jxl": (0, b"\xff\x0a"),
    "heic": (4, b"ftypheic"),
    "jpegli": (0, b"\xff\xd8\xff"),
    "mozjpeg": (0, b"\xff\xd8\xff"),
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real colour photo, 160x160, from the bundled samples."""
    return samples.load_sample("astronaut", max_side=160)


def test_every_design_codec_is_registered():
    assert set(CODEC_NAMES) >= {"jpeg", "webp", "avif", "jp2", "jxl", "heic", "jpegli", "mozjpeg"}
    assert set(QUALITY_LADDER) == set(CODEC_NAMES)


@pytest.mark.parametrize("name", CODEC_NAMES)
@pytest.mark.parametrize("size", [(131, 97), (1, 1), (17, 33)])
def test_round_trip_keeps_odd_sizes(name, size, photo):
    codec = get_codec(name)
    assert codec.unavailable() is None
    rgb = np.ascontiguousarray(photo[: size[0], : size[1]])
    data = codec.encode(rgb, QUALITY_LADDER[name][2])
    out = codec.decode(data)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    offset, magic = SIGNATURES[name]
    assert data[offset : offset + len(magic)] == magic
    if size == (131, 97):
        assert peak_signal_noise_ratio(rgb, out, data_range=255) > 25


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_quality_rises_with_setting(name, photo):
    codec = get_codec(name)
    sizes, psnrs = [], []
    for value in QUALITY_LADDER[name]:
        data = codec.encode(photo, value)
        sizes.append(len(data))
        psnrs.append(peak_signal_noise_ratio(photo, codec.decode(data), data_range=255))
    assert all(b > a for a, b in itertools.pairwise(sizes)), sizes
    assert all(b > a for a, b in itertools.pairwise(psnrs)), psnrs


def test_jxl_distance_zero_is_lossless(photo):
    codec = get_codec("jxl")
    assert np.array_equal(codec.decode(codec.encode(photo, 0)), photo)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_encoding_is_deterministic(name, photo):
    codec = get_codec(name)
    value = QUALITY_LADDER[name][1]
    assert codec.encode(photo, value) == codec.encode(photo, value)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_metadata_row_matches_codecs_schema(name):
    codec = get_codec(name)
    table = schemas.conform([codec.metadata()], schemas.CODECS)
    assert table.schema.names[: len(schemas.CODECS)] == schemas.CODECS.names
    row = table.to_pylist()[0]
    assert row["codec"] == name and row["codec_version"] and row["library"]
    assert row["knob_min"] < row["knob_max"]
    assert all(row["knob_min"] <= v <= row["knob_max"] for v in codec.default_values)
    assert row["binding"].split()[0] in ("pillow", "imagecodecs", "pillow-heif", "pyjpegli", "jpeglib")
    assert row["binding"].split()[1] != "not installed"


def test_versions_are_the_libraries_own():
    import imagecodecs
    from PIL import _avif, features

    assert get_codec("jpeg").version() == features.version("libjpeg_turbo")
    assert get_codec("webp").version() == features.version("webp")
    assert get_codec("jp2").version() == features.version("jpg_2000")
    assert get_codec("avif").version().startswith(features.version("avif"))
    assert "aom" in get_codec("avif").version() and "aom" in _avif.codec_versions()
    assert get_codec("jxl").version() in imagecodecs.jpegxl_version()
    import jpeglib
    import pillow_heif

    assert get_codec("heic").version().startswith(pillow_heif.libheif_version())
    assert "x265" in get_codec("heic").version()
    assert get_codec("mozjpeg").version() == f"4.0.3 (jpeglib {jpeglib.__version__})"
    assert "mozjpeg403" in jpeglib.version.versions()
    assert get_codec("jpegli").version() == "jpegli (pyjpegli 0.3.2)"


# --- the spec ---------------------------------------------------------------------------------------------


def _texts(settings):
    return [(s.codec, s.text) for s in settings]


def test_inline_spec_records_settings_as_given():
    settings = parse_spec("jpeg:q=20,40 webp:q=30 avif:q=50 jp2:ratio=20,40.5 jxl:d=1.0,3")
    assert _texts(settings) == [
        ("jpeg", "q=20"),
        ("jpeg", "q=40"),
        ("webp", "q=30"),
        ("avif", "q=50"),
        ("jp2", "ratio=20"),
        ("jp2", "ratio=40.5"),
        ("jxl", "d=1.0"),
        ("jxl", "d=3"),
    ]
    assert [s.value for s in settings][-2:] == [1.0, 3.0]
    assert isinstance(settings[0].value, int)
    assert [s.slug for s in settings][-3:] == ["ratio40.5", "d1.0", "d3"]


def test_aliases_duplicates_and_defaults():
    assert _texts(parse_spec("jpg:quality=50,50 jpeg:q=50")) == [("jpeg", "q=50")]
    assert _texts(parse_spec("jpegxl:distance=2")) == [("jxl", "d=2")]
    defaults = parse_spec("webp")
    assert [s.value for s in defaults] == list(get_codec("webp").default_values)
    # the default spec: every codec but the slow encoders, which run only when named
    assert {s.codec for s in parse_spec(DEFAULT_SPEC)} == set(CODEC_NAMES) - {"mozjpeg", "heic"}
    assert not get_codec("mozjpeg").in_default_spec and not get_codec("heic").in_default_spec


def test_spec_files_and_mappings_say_the_same(tmp_path):
    inline = parse_spec("jpeg:q=20,40 jxl:d=1.5")
    toml = tmp_path / "sweep.toml"
    toml.write_text("[jpeg]\nq = [20, 40]\n\n[jxl]\nd = [1.5]\n")
    yaml = tmp_path / "sweep.yaml"
    yaml.write_text("codecs:\n  jpeg: {q: [20, 40]}\n  jxl: {d: 1.5}\n")
    mapping = {"jpeg": {"q": "20,40"}, "jxl": {"d": [1.5]}}
    for spec in (str(toml), str(yaml), mapping):
        assert _texts(parse_spec(spec)) == _texts(inline)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("jpge:q=50", "did you mean 'jpeg'"),
        ("h264:q=50", "available codecs"),
        ("jxl:q=50", "d=0..25"),
        ("jpeg:q=0", "out of range"),
        ("jpeg:q=101", "q=1..100"),
        ("webp:q=-5", "out of range"),
        ("jxl:d=30", "out of range"),
        ("jp2:ratio=0.5", "ratio=1..1000"),
        ("jpeg:q=50.5", "whole numbers"),
        ("jpeg:q=high", "not a number"),
        ("jpeg:q=", "expected 'q=v1,v2"),
        ("", "empty codec spec"),
        ("missing-spec.toml", "does not exist"),
        # options beside the knob: the error names the codec's options
        ("jpeg:q=50;effort=3", "jpeg has no knob or option 'effort'"),
        ("jpeg:q=50;effort=3", "subsampling=444|422|420 (default 420), optimize=0|1 (default 1)"),
        ("jp2:ratio=10;subsampling=444", "options: none"),
        ("jpeg:q=50;subsampling=411", "subsampling=411 is not allowed; subsampling=444|422|420"),
        ("jxl:d=1;effort=11", "effort=1..10"),
        ("jpeg:bpp=0", "not a positive number of bits per pixel"),
        ("jpeg:bpp=fast", "not a number"),
    ],
)
def test_spec_errors_say_what_is_available(spec, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert expected in str(info.value)


def test_unknown_codec_lists_every_codec():
    with pytest.raises(SpecError) as info:
        parse_spec("jpeg:q=50 mystery:q=3")
    for name, codec in REGISTRY.items():
        assert name in str(info.value) and codec.knob_range() in str(info.value)


def test_malformed_spec_file_is_a_spec_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[jpeg\nq = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec(str(bad))


# --- sample photos ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(samples.SAMPLES))
def test_every_sample_is_a_real_colour_photo(name):
    rgb = samples.load_sample(name)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    assert min(rgb.shape[:2]) >= 256
    chroma = np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).mean()
    assert chroma > 2, "a colour photo, not greyscale"
    assert len(np.unique(rgb[..., 1])) > 100, "a photo, not a drawing"


def test_samples_uri_selects_and_scales():
    assert samples.parse_samples_uri("samples:") == (list(samples.SAMPLES), None)
    assert samples.parse_samples_uri("samples:coffee,astronaut?max_side=64") == (["coffee", "astronaut"], 64)
    small = samples.load_sample("coffee", max_side=64)
    assert small.shape == (43, 64, 3)
    with pytest.raises(samples.SampleError, match="did you mean 'rocket'"):
        samples.parse_samples_uri("samples:rockt")
    with pytest.raises(samples.SampleError, match="max_side"):
        samples.parse_samples_uri("samples:coffee?size=3")


def test_pillow_codecs_share_one_encode_and_decode():
    from pipeline.codecs import PillowCodec

    pillow = [c for c in REGISTRY.values() if isinstance(c, PillowCodec)]
    assert [c.name for c in pillow] == ["jpeg", "webp", "avif", "jp2", "heic"]
    assert all(type(c).encode is PillowCodec.encode and type(c).decode is PillowCodec.decode for c in pillow)
    assert list_codecs() == ["jpeg", "webp", "avif", "jp2", "heic", "jxl", "jpegli", "mozjpeg"]
    assert DEFAULT_SPEC.split()[0].startswith("jpeg:") and DEFAULT_SPEC.split()[-1].startswith("jpegli:")
