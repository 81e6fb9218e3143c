"""JPEG by jpegli (google/jpegli as built into pyjpegli 0.3.2), set up as ``cjpegli --quality Q`` sets it up.

``q`` = quality 1..100, mapped to a Butteraugli distance by jpegli's own ``jpegli_quality_to_distance`` and set with
``jpegli_set_distance`` (three quant tables), as cjpegli does. Options: ``subsampling`` (default 4:2:0, jpegli's
default; cjpegli's ``--chroma_subsampling``), ``progressive`` level 0..2 (default 2), ``aq`` adaptive quantisation
(default on), ``optimize`` optimised Huffman tables (default on); no ICC profile or JFIF marker is written.

pyjpegli's Python API only exposes quality (always 4:2:0, baseline), so the encoder is a small C shim
(``_jpegli_shim.c``) over the jpegli C API that pyjpegli's extension module exports. It is compiled on first use into
a per-user cache folder (``$XDG_CACHE_HOME/prfeval``, else ``~/.cache/prfeval``) with ``gcc`` and the libjpeg v62
header (Debian ``libjpeg62-turbo-dev``; ``make system-deps`` installs both); the codec is unavailable, saying why,
when that fails. The exported symbols are not a documented API, hence pyjpegli is pinned to 0.3.2.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .base import SUBSAMPLING, Codec, Option, QualityKnob, package_version, pillow_decode
from .registry import register_codec

PYJPEGLI_VERSION = "0.3.2"
_SHIM_SOURCE = Path(__file__).with_name("_jpegli_shim.c")


class ShimError(RuntimeError):
    """The jpegli shim could not be built or loaded."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prfeval"


@functools.cache
def _library() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """pyjpegli's extension module (its jpegli_* symbols made global) and the shim, built once per source."""
    try:
        import pyjpegli
    except ImportError:
        raise ShimError(f"pyjpegli is not installed (pip install pyjpegli=={PYJPEGLI_VERSION})") from None
    installed = package_version("pyjpegli")
    if installed != PYJPEGLI_VERSION:
        raise ShimError(
            f"needs pyjpegli {PYJPEGLI_VERSION}, whose jpegli C API it calls (installed: {installed})"
        )
    source = _SHIM_SOURCE.read_bytes()
    digest = hashlib.sha256(source + installed.encode()).hexdigest()[:16]
    target = cache_dir() / f"libjpegli_shim-{digest}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            cmd = ["gcc", "-O2", "-shared", "-fPIC", "-o", tmp, str(_SHIM_SOURCE)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            raise ShimError(
                f"cannot compile the jpegli shim (needs gcc and libjpeg62-turbo-dev): {e}"
            ) from None
        if done.returncode != 0:
            Path(tmp).unlink(missing_ok=True)
            first = (done.stderr.strip().splitlines() or ["gcc failed"])[0]
            raise ShimError(f"cannot compile the jpegli shim (needs gcc and libjpeg62-turbo-dev): {first}")
        os.replace(tmp, target)  # atomic: parallel workers may build it at the same time
    try:
        lib = ctypes.CDLL(pyjpegli.__file__, mode=ctypes.RTLD_GLOBAL)
        shim = ctypes.CDLL(str(target))
    except OSError as e:
        raise ShimError(f"cannot load the jpegli shim: {e}") from None
    shim.shim_encode.restype = ctypes.c_int
    shim.shim_encode.argtypes = [
        ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)), ctypes.POINTER(ctypes.c_ulong),
    ]  # fmt: skip
    shim.shim_free.argtypes = [ctypes.c_void_p]
    lib.jpegli_quality_to_distance.restype = ctypes.c_float
    lib.jpegli_quality_to_distance.argtypes = [ctypes.c_int]
    return lib, shim


def quality_to_distance(quality: int) -> float:
    """jpegli's own mapping of a quality to a Butteraugli distance (what cjpegli --quality uses)."""
    return float(_library()[0].jpegli_quality_to_distance(int(quality)))


def encode_rgb(
    rgb: np.ndarray, quality: int, subsampling: int, progressive: int, aq: int, optimize: int
) -> bytes:
    """One cjpegli-style encode: distance from quality, the given subsampling, progressive level, AQ, Huffman."""
    _, shim = _library()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    rc = shim.shim_encode(
        rgb.tobytes(), w, h, int(quality), 0.0, 0, subsampling, aq, progressive, 0, optimize, b"", 0,
        ctypes.byref(out), ctypes.byref(size),
    )  # fmt: skip
    if rc != 0 or not out:
        raise RuntimeError(f"jpegli could not encode a {w}x{h} image at quality {quality}")
    try:
        return ctypes.string_at(out, size.value)
    finally:
        shim.shim_free(out)


@register_codec("jpegli")
class JpegliCodec(QualityKnob, Codec):
    """JPEG by jpegli as cjpegli runs it: quality -> distance, adaptive quantisation, progressive level 2."""

    library = "jpegli"
    binding = "pyjpegli"
    knob_min = 1
    extension = "jpg"
    description = (
        "cjpegli --quality (jpegli_quality_to_distance, set_distance), adaptive quantisation, progressive 2, "
        "optimised Huffman, 4:2:0 unless chosen"
    )
    options = (
        SUBSAMPLING,
        Option.integer("progressive", 0, 2, 2),
        Option.switch("aq", True, aliases=("adaptive_quantization",)),
        Option.switch("optimize", True),
    )

    def unavailable(self) -> str | None:
        try:
            _library()
        except ShimError as e:
            return str(e)
        return None

    def version(self) -> str:
        return f"jpegli (pyjpegli {package_version('pyjpegli')})"

    def encode(self, rgb: np.ndarray, value: float, options: Mapping[str, str] | None = None) -> bytes:
        o = self.resolve(options)
        return encode_rgb(
            rgb, int(value), int(o["subsampling"]), int(o["progressive"]), int(o["aq"]), int(o["optimize"])
        )

    def decode(self, data: bytes) -> np.ndarray:
        return pillow_decode(data)
