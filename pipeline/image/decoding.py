"""Image decoding: any Pillow-readable file to an 8-bit RGB array, with odd inputs handled on purpose.

Policy (the same for references and distorted images, so both sides of a comparison are treated alike):

- greyscale (L, I;16, I, F) is replicated to three channels;
- alpha (RGBA, LA, palette with transparency) is composited over white, the background a browser shows;
- 16-bit samples are rounded to 8 bits (value / 257);
- CMYK and YCbCr are converted to RGB by Pillow;
- EXIF orientation is applied, so an image is compared the way a viewer displays it;
- Pillow's decompression-bomb guard stays on: images above ``max_pixels`` are refused, never decoded.

Every conversion is recorded: :func:`decode_image` / :func:`read_decoded` return a :class:`Decoded` whose
``conversions`` say what was done (``"alpha composited on white"``, ``"16->8 bits"``, ``"CMYK->RGB"``,
``"greyscale->RGB"``, ``"palette->RGB"``, ``"EXIF orientation 6 applied"``, ``"first frame of 12"``), with the facts a
caller needs to refuse a comparison the conversion would distort (the alpha channel, the frame count, the
orientation). :func:`decode`, :func:`read_image` and :func:`to_rgb` return the array alone. See docs/inputs.md.

Failures raise :class:`ImageError` with a short ``code`` (for the errors table) and a human message. A message
never carries the file's content: an undecodable file is described by its size and, at most, the name of the
format its first bytes look like.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass, field

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


# (offset, magic, what the file starts like): formats worth naming when Pillow cannot identify a file
MAGIC = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"BM", "a BMP image"),
    (0, b"\xff\x0a", "a JPEG XL image"),
    (0, b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (0, b"%PDF-", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip file"),
    (0, b"BZh", "a bzip2 file"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"\x28\xb5\x2f\xfd", "a Zstandard file"),
    (0, b"\x7fELF", "an ELF executable"),
    (0, b"PAR1", "a Parquet file"),
    (257, b"ustar", "a tar archive"),
)
_ISO_MEDIA = {b"avif": "an AVIF image", b"avis": "an AVIF image", b"heic": "a HEIF image",
              b"heix": "a HEIF image", b"mif1": "a HEIF image", b"msf1": "a HEIF image"}  # fmt: skip


def looks_like(data: bytes) -> str | None:
    """The name of the format ``data`` starts like (``"a ZIP archive"``, ``"text"``), or None: never its bytes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:8] == b"ftyp":
        return _ISO_MEDIA.get(data[8:12], "an ISO media file (MP4/MOV/HEIF)")
    for offset, magic, what in MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return what
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML document"
    if head.startswith(b"<?xml"):
        return "an SVG image" if b"<svg" in head else "an XML document"
    if head.startswith(b"<svg"):
        return "an SVG image"
    chunk = data[:4096]
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of the chunk is still text
        text = chunk[: e.start].decode("utf-8") if e.start >= len(chunk) - 3 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return None


def describe_bytes(data: bytes) -> str:
    """Why ``data`` is not an image, in words that carry none of its content: its size and what it looks like."""
    size = f"{len(data):,} bytes"
    what = looks_like(data)
    if what is None:
        return f"not a recognised image format ({size}, of no format known here)"
    if what.endswith("document") and ("HTML" in what or "XML" in what):
        return f"the file is {what}, not an image ({size}; e.g. an error page saved in place of the image)"
    if what.endswith("image"):
        return f"not a readable image ({size}; it starts like {what} but cannot be identified: damaged, or a variant this build cannot read)"
    return f"not an image ({size}; it starts like {what})"


@dataclass
class Decoded:
    """A decoded image and what decoding did to it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    conversions: list[str] = field(default_factory=list)  # in the order applied; empty for a plain RGB image
    alpha: np.ndarray | None = (
        None  # (H, W) uint8 as displayed, when some pixel was not opaque (then composited)
    )
    frames: int = 1  # more than one: an animation, of which only the first frame is in ``rgb``
    orientation: int = 1  # the EXIF orientation applied (1: none)

    @property
    def summary(self) -> str:
        """The conversions as one string, ``"; "``-separated (empty when none)."""
        return "; ".join(self.conversions)


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_KINDS = {"L": "greyscale->RGB", "1": "bilevel->RGB", "P": "palette->RGB", "LA": "greyscale->RGB",
          "La": "greyscale->RGB", "PA": "palette->RGB", "I": "greyscale->RGB", "F": "greyscale->RGB",
          **{m: "greyscale->RGB" for m in SIXTEEN_BIT}}  # fmt: skip


def _rawmode(img: Image.Image) -> str:
    """How the file stores its samples (``"RGB;16B"`` for a 16-bit RGB PNG), read before decoding."""
    try:
        args = img.tile[0][3]
    except (AttributeError, IndexError, TypeError):
        return ""
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def convert(img: Image.Image, *, rawmode: str = "") -> Decoded:
    """An opened Pillow image as (H, W, 3) uint8 following the module's policy, with what was done to it.

    ``rawmode`` (from the file's tile, before loading) tells a 16-bit RGB file that Pillow opens as 8-bit."""
    done: list[str] = []
    orientation = img.getexif().get(0x0112, 1)
    orientation = orientation if isinstance(orientation, int) and 2 <= orientation <= 8 else 1
    img = ImageOps.exif_transpose(img)
    if orientation != 1:
        done.append(f"EXIF orientation {orientation} applied")
    mode = img.mode
    if mode in _KINDS and mode not in ("L", "1"):
        done.append(_KINDS[mode])
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in (*SIXTEEN_BIT, "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        scaled = mode != "F" and arr.max(initial=0) > 255
        if scaled:
            arr = arr / 257.0
        if mode == "F":
            done.append("float->8 bits")
        elif scaled:
            done.append("16->8 bits" if mode in SIXTEEN_BIT else "32-bit integer->8 bits")
        else:
            done.append(f"{'16' if mode in SIXTEEN_BIT else '32'}-bit samples read as 8-bit (none above 255)")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Decoded(np.repeat(arr[..., None], 3, axis=2), done, orientation=orientation)
    if ";16" in rawmode:
        done.append("16->8 bits")
    alpha = None
    if mode in WITH_ALPHA:
        rgba = img.convert("RGBA")
        channel = np.asarray(rgba.getchannel("A"), dtype=np.uint8)
        if (channel == 255).all():
            done.append("opaque alpha channel dropped")
        else:
            alpha = channel.copy()
            done.append("alpha composited on white")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        if img.mode in ("L", "1"):
            done.append(_KINDS[img.mode])
        elif img.mode != "RGBA":
            done.append(f"{img.mode}->RGB")
        img = img.convert("RGB")
    return Decoded(np.asarray(img, dtype=np.uint8).copy(), done, alpha=alpha, orientation=orientation)


def to_rgb(img: Image.Image) -> np.ndarray:
    """Convert an opened Pillow image to an (H, W, 3) uint8 array following the module's policy."""
    return convert(img).rgb


_BYTES_LITERAL = re.compile(r"""\bb(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _reason(e: BaseException) -> str:
    """A decoder's complaint without any bytes of the file (Pillow quotes some, e.g. a PNG chunk type)."""
    return _BYTES_LITERAL.sub("<bytes>", " ".join(str(e).split()))[:200]


def _frames(img: Image.Image) -> int:
    try:
        return max(1, int(getattr(img, "n_frames", 1) or 1))
    except Exception:  # a broken later frame: the first one may still decode; the count is unknown
        with contextlib.suppress(Exception):  # loading the image then says what is wrong with it
            img.seek(0)
        return 1


def decode_image(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image") -> Decoded:
    """Decode image bytes to (H, W, 3) uint8 RGB with the conversions applied, or raise :class:`ImageError`."""
    if not data:
        raise ImageError("empty", f"{name}: the file is empty (0 bytes)")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels  # above it Pillow warns; the warning is an error here
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data))
                rawmode = _rawmode(img)
                frames = _frames(img)
                img.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ImageError(
                    "too_large", f"{name}: refused, larger than the {max_pixels:,}-pixel limit ({_reason(e)})"
                ) from None
            except UnidentifiedImageError:
                raise ImageError("not_an_image", f"{name}: {describe_bytes(data)}") from None
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise ImageError("corrupt", f"{name}: cannot decode ({_reason(e)})") from None
        try:
            decoded = convert(img, rawmode=rawmode)
        except (OSError, ValueError) as e:
            raise ImageError("corrupt", f"{name}: cannot convert {img.mode} to RGB ({_reason(e)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    decoded.frames = frames
    if frames > 1:
        decoded.conversions.append(f"first frame of {frames}")
    return decoded


def decode(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Decode image bytes to (H, W, 3) uint8 RGB, or raise :class:`ImageError`."""
    return decode_image(data, max_pixels=max_pixels, name=name).rgb


def read_decoded(uri: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read and decode an image from any URI, with its conversions; a missing or unreadable object raises
    :class:`ImageError`."""
    shown = storage.display(uri)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise ImageError("missing", f"{shown}: no such file or object") from None
    except PermissionError as e:
        raise ImageError("permission", f"{shown}: permission denied ({storage.redact(str(e))})") from None
    except IsADirectoryError:
        raise ImageError("read", f"{shown}: is a folder, not a file") from None
    except OSError as e:
        raise ImageError("read", f"{shown}: cannot read ({storage.redact(str(e))})") from None
    return decode_image(data, max_pixels=max_pixels, name=shown)


def read_image(uri: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode an image from any URI; a missing or unreadable object raises :class:`ImageError`."""
    return read_decoded(uri, max_pixels=max_pixels).rgb


def encode_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 array (fast compression: outputs are intermediate data)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
