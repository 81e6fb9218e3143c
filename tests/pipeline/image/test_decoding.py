"""Image decoding policy: odd inputs are converted on purpose, bad ones refused with a clear reason."""

from __future__ import annotations

import io

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from PIL import Image

from pipeline.image import decoding


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


RGB = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_rgb_round_trip():
    assert np.array_equal(decoding.decode(encoded(Image.fromarray(RGB), "PNG")), RGB)


def test_greyscale_is_replicated():
    grey = RGB[..., 0]
    out = decoding.decode(encoded(Image.fromarray(grey), "PNG"))
    assert out.shape == (40, 60, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))


def test_rgba_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    out = decoding.decode(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out[:2] == [200, 0, 0]).all() and (out[2:] == [255, 255, 255]).all()


def test_16_bit_is_rounded_to_8():
    v = np.full((8, 8), 65535, dtype=np.uint16)
    v[0, 0] = 257 * 100
    out = decoding.decode(encoded(Image.fromarray(v), "PNG"))
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 100


def test_cmyk_jpeg_is_converted():
    out = decoding.decode(encoded(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    assert out.shape == (8, 16, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60  # red


def test_exif_orientation_is_applied():
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decoding.decode(encoded(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (60, 40, 3)


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "empty", "empty"),
        (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "not_an_image", "HTML"),
        (encoded(Image.fromarray(RGB), "PNG")[:200], "corrupt", "cannot decode"),
        (encoded(Image.fromarray(RGB), "JPEG")[:300], "corrupt", "cannot decode"),
    ],
)
def test_bad_bytes_are_refused_with_a_reason(data, code, words):
    with pytest.raises(decoding.ImageError) as e:
        decoding.decode(data, name="x.png")
    assert e.value.code == code and words in e.value.message and "x.png" in e.value.message


def test_decompression_bomb_is_refused_before_decoding():
    # a PNG that declares 30000 x 30000 pixels but is tiny on disk
    big = encoded(Image.new("L", (30000, 30000)), "PNG")
    assert len(big) < 2_000_000
    with pytest.raises(decoding.ImageError) as e:
        decoding.decode(big, max_pixels=50_000_000)
    assert e.value.code == "too_large" and "50,000,000" in e.value.message
    small = encoded(Image.fromarray(RGB), "PNG")
    with pytest.raises(decoding.ImageError, match="limit"):
        decoding.decode(small, max_pixels=1000)


def test_missing_and_forbidden_objects(tmp_path):
    with pytest.raises(decoding.ImageError) as e:
        decoding.read_image(str(tmp_path / "nothere.png"))
    assert e.value.code == "missing"

    class Forbidden(MemoryFileSystem):
        protocol = "forbidden"

        def _open(self, path, mode="rb", **kw):
            raise PermissionError(f"Access Denied for {path}")

    fsspec.register_implementation("forbidden", Forbidden, clobber=True)
    with pytest.raises(decoding.ImageError) as e:
        decoding.read_image("forbidden://bucket/x.png")
    assert e.value.code == "permission" and "permission denied" in e.value.message


def png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG (Pillow opens it as 8-bit RGB)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def animated_gif(frames: int) -> bytes:
    imgs = [Image.fromarray(np.roll(RGB, k, axis=1)) for k in range(frames)]
    return encoded(imgs[0], "GIF", save_all=True, append_images=imgs[1:])


def test_a_plain_rgb_image_has_no_conversions():
    d = decoding.decode_image(encoded(Image.fromarray(RGB), "PNG"))
    assert (
        d.conversions == [] and d.summary == "" and d.alpha is None and d.frames == 1 and d.orientation == 1
    )
    assert decoding.decode_image(encoded(Image.fromarray(RGB), "JPEG")).conversions == []


def transparent() -> Image.Image:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0
    return Image.fromarray(rgba, "RGBA")


def palette_with_transparency() -> bytes:
    p = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(p, "PNG", transparency=0)


@pytest.mark.parametrize(
    ("data", "conversions"),
    [
        (encoded(Image.fromarray(RGB[..., 0]), "PNG"), ["greyscale->RGB"]),
        (encoded(Image.fromarray(RGB).convert("1"), "PNG"), ["bilevel->RGB"]),
        (
            encoded(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257), "PNG"),
            ["greyscale->RGB", "16->8 bits"],
        ),
        (
            encoded(Image.fromarray(RGB[..., 0].astype(np.uint16)), "PNG"),
            ["greyscale->RGB", "16-bit samples read as 8-bit (none above 255)"],
        ),
        (png16_rgb(RGB.astype(np.uint16) * 257), ["16->8 bits"]),
        (encoded(Image.fromarray(RGB).convert("RGBA"), "PNG"), ["opaque alpha channel dropped"]),
        (encoded(transparent(), "PNG"), ["alpha composited on white"]),
        (
            encoded(Image.fromarray(RGB).convert("LA"), "PNG"),
            ["greyscale->RGB", "opaque alpha channel dropped"],
        ),
        (encoded(Image.fromarray(RGB).convert("P"), "PNG"), ["palette->RGB"]),
        (palette_with_transparency(), ["palette->RGB", "alpha composited on white"]),
        (encoded(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95), ["CMYK->RGB"]),
        (encoded(Image.fromarray(RGB).convert("F"), "TIFF"), ["greyscale->RGB", "float->8 bits"]),
        (animated_gif(3), ["palette->RGB", "first frame of 3"]),
    ],
    ids=[
        "grey",
        "bilevel",
        "grey16",
        "grey16-low",
        "rgb16",
        "rgba-opaque",
        "rgba",
        "la",
        "palette",
        "palette-transparent",
        "cmyk",
        "float",
        "animated",
    ],
)
def test_every_conversion_is_recorded(data, conversions):
    d = decoding.decode_image(data)
    assert d.conversions == conversions and d.summary == "; ".join(conversions)
    assert d.rgb.shape == (40, 60, 3) and d.rgb.dtype == np.uint8
    assert np.array_equal(d.rgb, decoding.decode(data))  # the array is the one decode returns


def test_exif_orientation_is_recorded_with_the_alpha_as_displayed():
    exif = Image.Exif()
    exif[0x0112] = 6
    d = decoding.decode_image(encoded(Image.fromarray(RGB), "JPEG", quality=95, exif=exif.tobytes()))
    assert (
        d.conversions == ["EXIF orientation 6 applied"] and d.orientation == 6 and d.rgb.shape == (60, 40, 3)
    )
    t = decoding.decode_image(encoded(transparent(), "PNG"))
    assert t.alpha.shape == (40, 60) and (t.alpha[:10] == 0).all() and (t.alpha[10:] == 255).all()
    assert (t.rgb[:10] == 255).all()  # transparent pixels show the white background


def test_an_animation_decodes_its_first_frame():
    d = decoding.decode_image(animated_gif(4))
    assert d.frames == 4
    assert np.array_equal(d.rgb, decoding.decode(encoded(Image.fromarray(RGB), "GIF")))


SECRET_CONTENT = b"hunter2-Secret-Content-7f3a"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<!DOCTYPE html><html>" + SECRET_CONTENT + b"</html>", "HTML document"),
        (b"<?xml version='1.0'?><svg>" + SECRET_CONTENT + b"</svg>", "SVG image"),
        (b"%PDF-1.7\n" + SECRET_CONTENT, "PDF document"),
        (b"PK\x03\x04" + SECRET_CONTENT, "ZIP archive"),
        (b"\x1f\x8b\x08" + SECRET_CONTENT, "gzip file"),
        (b"\x7fELF" + SECRET_CONTENT, "ELF executable"),
        (b"GIF89a" + SECRET_CONTENT, "GIF image"),
        (b"\x00\x00\x00\x1cftypavif" + SECRET_CONTENT, "AVIF image"),
        (b"root:x:0:0:" + SECRET_CONTENT + b"\n", "text"),
        (bytes(range(200, 256)) + SECRET_CONTENT, "no format known here"),
    ],
    ids=["html", "svg", "pdf", "zip", "gzip", "elf", "gif", "avif", "text", "binary"],
)
def test_an_undecodable_file_is_described_without_its_content(data, words):
    with pytest.raises(decoding.ImageError) as e:
        decoding.decode(data, name="x.png")
    msg = e.value.message
    assert e.value.code in ("not_an_image", "corrupt") and words in msg and f"{len(data):,} bytes" in msg
    for needle in (SECRET_CONTENT.decode(), "hunter2", data[:8].hex(), "root:x", "\\x"):
        assert needle not in msg, (needle, msg)


def test_a_decoders_quoted_bytes_are_not_repeated():
    png = bytearray(encoded(Image.fromarray(RGB), "PNG"))
    at = png.index(b"IDAT")
    png[at : at + 4] = b"Zq9!"  # an unknown critical chunk type where the data should be
    with pytest.raises(decoding.ImageError) as e:
        decoding.decode(bytes(png), name="x.png")
    assert "Zq9!" not in e.value.message and "b'" not in e.value.message


def test_a_decoders_complaint_loses_any_quoted_bytes():
    err = SyntaxError("broken PNG file (chunk b'Zq9!') near b\"\\x00secret\"")
    assert decoding._reason(err) == "broken PNG file (chunk <bytes>) near <bytes>"
