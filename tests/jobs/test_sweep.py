"""`prfeval sweep` end to end: real codecs, a real local Ray, a real S3 server.

Checks are independent of the sweep's own code where possible: outputs are read back with s3fs/Pillow, bitstream
sizes are compared with the kept bitstreams, decoded images with a second decoder (imagecodecs), PSNR comes from
scikit-image.
"""

from __future__ import annotations

import io
import itertools
import json

import imagecodecs
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from jobs import sweep
from pipeline.codecs import get_codec, list_codecs
from pipeline.image import samples
from pipeline.io import schemas, storage

SPEC = (
    "jpeg:q=20,50,85 webp:q=20,50,85 avif:q=20,50,85 jp2:ratio=60,25,8 jxl:d=4,2,0.8 heic:q=20,50,85 "
    "jpegli:q=20,50,85 mozjpeg:q=20,50,85"
)
N_SETTINGS = 24


def heif_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    return np.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=True))


# Second decoders for the kept bitstreams (imagecodecs' own bindings, not the Pillow path the sweep uses).
DECODERS = {
    "jpeg": imagecodecs.jpeg8_decode,
    "webp": imagecodecs.webp_decode,
    "avif": imagecodecs.avif_decode,
    "jp2": imagecodecs.jpeg2k_decode,
    "jxl": imagecodecs.jpegxl_decode,
    "heic": heif_decode,  # libheif directly, not through the Pillow plugin
    "jpegli": imagecodecs.jpeg8_decode,
    "mozjpeg": imagecodecs.jpeg8_decode,
}


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def read_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def crops() -> dict[str, np.ndarray]:
    """Small crops of three real photos, of different and odd sizes."""
    return {
        "astronaut": samples.load_sample("astronaut", max_side=192)[20:148, 30:190],
        "coffee": samples.load_sample("coffee", max_side=192)[:101, :143],
        "chelsea": samples.load_sample("chelsea", max_side=160)[5:105, 10:130],
    }


def quality_order(codec: str, setting: str) -> float:
    value = float(setting.split("=", 1)[1])
    return value if get_codec(codec).higher_is_better_quality else -value


@pytest.mark.slow
def test_sweep_every_codec_on_s3_then_rerun(s3, ray_local, capsys):
    photos = crops()
    for name, rgb in photos.items():
        storage.write_bytes(s3.uri(f"refs/{name}.png"), png_bytes(rgb))
    out = s3.uri("runs/nightly")
    argv = ["--refs", s3.uri("refs/"), "--codecs", SPEC, "--output", out, "--keep-bitstreams", "--quiet"]

    assert sweep.main(argv) == 0
    first = capsys.readouterr()
    assert f"{3 * N_SETTINGS} encoded now, 0 reused" in first.out
    assert "testing-secret-key" not in first.out + first.err

    def read_table(key: str):
        with s3.fs.open(f"{s3.bucket}/runs/nightly/{key}", "rb") as f:
            return pq.read_table(f)

    manifest = read_table("manifest.parquet")
    assert manifest.schema.names[: len(schemas.SWEEP_MANIFEST)] == schemas.SWEEP_MANIFEST.names
    for field in schemas.SWEEP_MANIFEST:
        assert manifest.schema.field(field.name).type == field.type, field.name
    rows = manifest.to_pylist()
    assert len(rows) == 3 * N_SETTINGS
    assert len({r["dist_id"] for r in rows}) == len(rows)
    assert {r["codec"] for r in rows} == set(list_codecs())

    codecs_rows = read_table("codecs.parquet").to_pylist()
    assert sorted(r["codec"] for r in codecs_rows) == sorted(list_codecs())
    versions = {r["codec"]: r["codec_version"] for r in codecs_rows}
    assert all(versions.values())
    assert read_table("errors/sweep.parquet").num_rows == 0

    bucket = f"{s3.bucket}/runs/nightly"
    psnr: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        rgb = photos[r["ref_id"]]
        h, w = rgb.shape[:2]
        assert r["codec_version"] == versions[r["codec"]]
        assert (r["width"], r["height"]) == (w, h)
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (w * h))
        assert r["encode_ms"] > 0 and r["decode_ms"] > 0
        assert not r["ref_uri"].startswith("s3://") and not r["dist_uri"].startswith("s3://")
        bitstream = s3.fs.cat(f"{bucket}/{r['bitstream_uri']}")
        assert len(bitstream) == r["bytes"]
        decoded = read_png(s3.fs.cat(f"{bucket}/{r['dist_uri']}"))
        assert decoded.shape == rgb.shape
        second = np.asarray(DECODERS[r["codec"]](bitstream))[..., :3]
        assert np.array_equal(second, decoded), r["dist_id"]
        reference = read_png(s3.fs.cat(f"{bucket}/{r['ref_uri']}"))
        assert np.array_equal(reference, rgb)
        quality = peak_signal_noise_ratio(reference, decoded, data_range=255)
        psnr.setdefault((r["ref_id"], r["codec"]), []).append(
            (quality_order(r["codec"], r["setting"]), quality)
        )
    for key, points in psnr.items():
        ordered = [q for _, q in sorted(points)]
        assert all(b > a for a, b in itertools.pairwise(ordered)), (key, ordered)

    # Rerun: nothing is redone except a decoded image that went missing, and nothing is duplicated.
    s3.fs.rm(f"{bucket}/images/coffee/avif/q50.png")
    assert sweep.main(argv) == 0
    assert f"1 encoded now, {3 * N_SETTINGS - 1} reused" in capsys.readouterr().out
    again = read_table("manifest.parquet").to_pylist()
    assert [r["dist_id"] for r in again] == [r["dist_id"] for r in rows]
    assert [r["bytes"] for r in again] == [r["bytes"] for r in rows]  # the re-encode gives the same bitstream
    assert s3.fs.exists(f"{bucket}/images/coffee/avif/q50.png")


@pytest.mark.slow
def test_broken_and_odd_references(tmp_path, ray_local, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    rng = np.random.default_rng(7)
    photo = samples.load_sample("chelsea", max_side=200)
    grey = photo[:48, :64].mean(axis=2).astype(np.uint8)
    (refs / "grey.png").write_bytes(png_bytes(grey))
    rgba = np.dstack([photo[:40, :40], np.full((40, 40), 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    (refs / "rgba.png").write_bytes(png_bytes(rgba))
    deep = rng.integers(0, 65536, (30, 50), dtype=np.uint16)
    (refs / "deep.png").write_bytes(png_bytes(deep))
    (refs / "odd.png").write_bytes(png_bytes(photo[:131, :97]))
    (refs / "bomb.png").write_bytes(png_bytes(np.zeros((1200, 1000), np.uint8)))
    (refs / "truncated.png").write_bytes(png_bytes(photo)[:300])
    (refs / "page.png").write_bytes(b"<!DOCTYPE html><html><body>not found</body></html>")
    (refs / "wide.png").write_bytes(
        png_bytes(np.tile(photo[:2, :100], (1, 165, 1)))
    )  # 16500 px: too wide for WebP
    (refs / "notes.txt").write_text("not a reference")
    out = tmp_path / "out"

    argv = [
        "--refs",
        str(refs),
        "--codecs",
        "jpeg:q=60 webp:q=50 jxl:d=2",
        "--output",
        str(out),
        "--max-pixels",
        "1000000",
    ]
    assert sweep.main([*argv, "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "4 failure(s)" in captured.err and "the other references completed" in captured.err
    assert "notes.txt" in captured.out

    errors = pq.read_table(out / "errors" / "sweep.parquet")
    assert errors.schema == schemas.ERRORS
    by_ref = {r["ref_id"]: r for r in errors.to_pylist()}
    assert {k: (v["error"], v["dist_id"]) for k, v in by_ref.items()} == {
        "bomb": ("too_large", None),
        "truncated": ("corrupt", None),
        "page": ("not_an_image", None),
        "wide": ("codec", "wide/webp/q=50"),  # one setting failed; the reference's other codecs completed
    }
    assert all(r["stage"] == "sweep" and r["message"] for r in by_ref.values())

    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted({r["ref_id"] for r in rows}) == ["deep", "grey", "odd", "rgba", "wide"]
    assert len(rows) == 4 * 3 + 2
    ref = {r["ref_id"]: read_png((out / r["ref_uri"]).read_bytes()) for r in rows}
    assert np.array_equal(ref["grey"], np.repeat(grey[..., None], 3, axis=2))
    assert (ref["rgba"][:10, :10] == 255).all() and np.array_equal(ref["rgba"][20:, 20:], photo[20:40, 20:40])
    expected_deep = np.clip(np.rint(deep / 257.0), 0, 255).astype(np.uint8)
    assert np.array_equal(ref["deep"], np.repeat(expected_deep[..., None], 3, axis=2))
    for r in rows:
        decoded = read_png((out / r["dist_uri"]).read_bytes())
        assert decoded.shape == ref[r["ref_id"]].shape
        assert (r["width"], r["height"]) == (decoded.shape[1], decoded.shape[0])
    assert {(r["width"], r["height"]) for r in rows if r["ref_id"] == "odd"} == {(97, 131)}


@pytest.mark.slow
def test_bundled_samples_and_reference_table(tmp_path, ray_local, capsys):
    out = tmp_path / "samples"
    assert (
        sweep.main(
            [
                "--refs",
                "samples:coffee,astronaut?max_side=96",
                "--codecs",
                "jpeg:q=30,70",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["dist_id"] for r in rows] == [
        "coffee/jpeg/q=30",
        "coffee/jpeg/q=70",
        "astronaut/jpeg/q=30",
        "astronaut/jpeg/q=70",
    ]
    assert rows[0]["source_uri"] == "samples:coffee?max_side=96"
    coffee = read_png((out / "refs" / "coffee.png").read_bytes())
    assert np.array_equal(coffee, samples.load_sample("coffee", max_side=96))

    # The written references as a manifest-like table (relative URIs): the same sweep, locally, in one process.
    table = out / "refs.csv"
    table.write_text(
        "ref_id,ref_uri\ncoffee,refs/coffee.png\ncoffee,refs/coffee.png\nastronaut,refs/astronaut.png\n"
    )
    again = tmp_path / "from-table"
    argv = ["--refs", str(table), "--codecs", "jpeg:q=30,70", "--output", str(again), "--executor", "local"]
    assert sweep.main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    rows_again = pq.read_table(again / "manifest.parquet").to_pylist()
    assert [r["dist_id"] for r in rows_again] == [r["dist_id"] for r in rows]
    assert [r["bytes"] for r in rows_again] == [r["bytes"] for r in rows]


@pytest.mark.parametrize(
    ("codecs", "expected"),
    [
        ("jpge:q=50", "did you mean 'jpeg'"),
        ("jpeg:q=150", "q=1..100"),
        ("jxl:q=1", "d=0..25"),
        ("jpeg:q=50;effort=3", "no knob or option 'effort'; it takes q=1..100"),
        ("jpeg:q=50;effort=3", "options: subsampling=444|422|420 (default 420), optimize=0|1"),
        ("avif:bpp=0.1;subsampling=411", "subsampling=444|422|420"),
    ],
)
def test_bad_spec_is_a_usage_error_listing_codecs(tmp_path, capsys, codecs, expected):
    storage.write_bytes(str(tmp_path / "refs" / "a.png"), png_bytes(np.zeros((8, 8, 3), np.uint8)))
    code = sweep.main(
        ["--refs", str(tmp_path / "refs"), "--codecs", codecs, "--output", str(tmp_path / "out")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    if codecs.startswith("jpge"):
        assert all(name in err for name in list_codecs())
    if ";" in codecs:
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_options_targets_and_speed_in_the_manifest(tmp_path, capsys):
    """Options cross the knob, bpp targets find a knob value per image, an unreachable target is one error row
    naming the image, and every row carries its speed (plain loop, no Ray)."""
    out = tmp_path / "out"
    spec = (
        "jpeg:q=60;subsampling=420,444 jpegli:q=70;subsampling=444 mozjpeg:bpp=1.5 jxl:bpp=0.8 jpeg:bpp=0.05"
    )
    argv = ["--refs", "samples:coffee,astronaut?max_side=96", "--codecs", spec, "--output", str(out)]
    assert sweep.main([*argv, "--executor", "local", "--quiet"]) == 1
    capsys.readouterr()

    errors = pq.read_table(out / "errors" / "sweep.parquet").to_pylist()
    assert sorted(e["dist_id"] for e in errors) == ["astronaut/jpeg/bpp=0.05", "coffee/jpeg/bpp=0.05"]
    for e in errors:
        assert e["error"] == "bpp_unreachable" and f"samples:{e['ref_id']}" in e["message"]
        assert "q=1, gives" in e["message"] and "bpp" in e["message"]

    rows = {r["dist_id"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert sorted(rows) == sorted(
        f"{ref}/{s}"
        for ref in ("coffee", "astronaut")
        for s in (
            "jpeg/q=60;subsampling=420",
            "jpeg/q=60;subsampling=444",
            "jpegli/q=70;subsampling=444",
            "mozjpeg/bpp=1.5",
            "jxl/bpp=0.8",
        )
    )
    for r in rows.values():
        for col in schemas.TIMING_COLUMNS:
            assert r[col] > 0, (r["dist_id"], col)
        assert r["encode_mp_per_s"] == pytest.approx(r["width"] * r["height"] / 1e3 / r["encode_ms"])
        assert (
            "knob" not in r
        )  # the knob's name comes from codecs.parquet (its `knob` column reaches `images`)
        decoded = read_png((out / r["dist_uri"]).read_bytes())
        assert decoded.shape == (r["height"], r["width"], 3)
    for ref in ("coffee", "astronaut"):
        fixed = rows[f"{ref}/jpeg/q=60;subsampling=444"]
        assert (fixed["knob_value"], fixed["target_bpp"]) == (60, None)
        assert json.loads(fixed["codec_options"]) == {
            "subsampling": "444",
            "optimize": "1",
            "progressive": "0",
        }
        assert (
            rows[f"{ref}/jpeg/q=60;subsampling=444"]["bytes"]
            > rows[f"{ref}/jpeg/q=60;subsampling=420"]["bytes"]
        )
        for name, target in (("mozjpeg/bpp=1.5", 1.5), ("jxl/bpp=0.8", 0.8)):
            r = rows[f"{ref}/{name}"]
            assert r["target_bpp"] == target and r["bpp"] <= target and r["setting"] == name.split("/")[1]
            codec = get_codec(r["codec"])
            value = int(r["knob_value"]) if codec.integer_knob else r["knob_value"]
            rgb = read_png((out / r["ref_uri"]).read_bytes())
            assert (
                len(codec.encode(rgb, value)) == r["bytes"]
            )  # the recorded knob value remakes the bitstream
            better = value + 1 if codec.higher_is_better_quality else round(value - codec.knob_step, 10)
            assert len(codec.encode(rgb, better)) * 8 / (r["width"] * r["height"]) > target

    codecs_rows = {r["codec"]: r for r in pq.read_table(out / "codecs.parquet").to_pylist()}
    assert set(codecs_rows) == {"jpeg", "jpegli", "mozjpeg", "jxl"}
    assert codecs_rows["jpegli"]["codec_version"] == "jpegli (pyjpegli 0.3.2)"
    assert "progressive=0|1|2 (default 2)" in codecs_rows["jpegli"]["options"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--refs", "EMPTY"], "no reference images found"),
        (["--refs", "samples:lena"], "no bundled sample photo 'lena'"),
        (["--refs", "TABLE"], "lacks column(s) ref_uri"),
        (["--refs", "samples:", "--max-pixels", "0"], "expected a positive number"),
    ],
)
def test_unusable_input_exits_2(tmp_path, capsys, extra, expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    (tmp_path / "refs.csv").write_text("ref_id,uri\na,a.png\n")
    extra = [{"EMPTY": str(tmp_path / "empty"), "TABLE": str(tmp_path / "refs.csv")}.get(a, a) for a in extra]
    assert sweep.main([*extra, "--codecs", "jpeg", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_rerun_redoes_what_changed(tmp_path, monkeypatch):
    """A new codec version or a different source is redone; everything else is reused (plain loop, no Ray)."""
    from pipeline.codecs import JpegCodec
    from pipeline.sweep import run_sweep

    out = str(tmp_path / "out")
    spec = "jpeg:q=40,80 webp:q=50"
    first = run_sweep("samples:coffee?max_side=64", spec, out, executor="local", progress=False)
    assert (first.n_encoded, first.n_reused, first.exit_code) == (3, 0, 0)

    monkeypatch.setattr(JpegCodec, "version", lambda self: "99.0.0")
    second = run_sweep("samples:coffee?max_side=64", spec, out, executor="local", progress=False)
    assert (second.n_encoded, second.n_reused) == (2, 1)
    rows = pq.read_table(second.manifest_uri).to_pylist()
    assert [(r["codec"], r["codec_version"]) for r in rows][:2] == [("jpeg", "99.0.0")] * 2
    codec_rows = pq.read_table(second.codecs_uri).to_pylist()
    assert [r["codec_version"] for r in codec_rows if r["codec"] == "jpeg"] == ["99.0.0"]

    third = run_sweep("samples:coffee?max_side=48", spec, out, executor="local", progress=False)
    assert (third.n_encoded, third.n_reused) == (3, 0)
    rows = pq.read_table(third.manifest_uri).to_pylist()
    assert len(rows) == 3 and {(r["width"], r["height"]) for r in rows} == {(48, 32)}
