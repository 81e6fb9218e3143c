"""Image decoding: any Pillow-readable file to an 8-bit RGB array, with odd inputs handled on purpose.

Policy (the same for references and distorted images, so both sides of a comparison are treated alike):

- greyscale (L, I;16, I, F) is replicated to three channels;
- alpha (RGBA, LA, palette with transparency) is composited over white, the background a browser shows;
- 16-bit samples are rounded to 8 bits (value / 257);
- CMYK and YCbCr are converted to RGB by Pillow;
- EXIF orientation is applied, so an image is compared the way a viewer displays it;
- Pillow's decompression-bomb guard stays on: images above ``max_pixels`` are refused, never decoded.

Failures raise :class:`ImageError` with a short ``code`` (for the errors table) and a human message.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.io import storage

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own hard limit (twice its warning threshold)


class ImageError(Exception):
    """An input image that cannot be used: ``code`` is a short reason, the message says what happened."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _describe_bytes(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml")):
        return "the file is an HTML/XML document, not an image"
    return f"not a recognised image format (first bytes {data[:8].hex()})"


def to_rgb(img: Image.Image) -> np.ndarray:
    """Convert an opened Pillow image to an (H, W, 3) uint8 array following the module's policy."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode != "F" and arr.max(initial=0) > 255:
            arr = arr / 257.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def decode(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Decode image bytes to (H, W, 3) uint8 RGB, or raise :class:`ImageError`."""
    if not data:
        raise ImageError("empty", f"{name}: the file is empty (0 bytes)")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels  # above it Pillow warns; the warning is an error here
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data))
                img.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ImageError(
                    "too_large", f"{name}: refused, larger than the {max_pixels:,}-pixel limit ({e})"
                ) from None
            except UnidentifiedImageError:
                raise ImageError("not_an_image", f"{name}: {_describe_bytes(data)}") from None
            except (OSError, SyntaxError, ValueError) as e:
                raise ImageError("corrupt", f"{name}: cannot decode ({e})") from None
        try:
            return to_rgb(img)
        except (OSError, ValueError) as e:
            raise ImageError("corrupt", f"{name}: cannot convert {img.mode} to RGB ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def read_image(uri: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode an image from any URI; a missing or unreadable object raises :class:`ImageError`."""
    shown = storage.display(uri)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise ImageError("missing", f"{shown}: no such file or object") from None
    except PermissionError as e:
        raise ImageError("permission", f"{shown}: permission denied ({storage.redact(str(e))})") from None
    except OSError as e:
        raise ImageError("read", f"{shown}: cannot read ({storage.redact(str(e))})") from None
    return decode(data, max_pixels=max_pixels, name=shown)


def encode_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 array (fast compression: outputs are intermediate data)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
