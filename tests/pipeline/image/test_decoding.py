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
