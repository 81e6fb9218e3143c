"""JPEG by MozJPEG 4.0.3 as the jpeglib package bundles it (``jpeglib.version("mozjpeg403")``).

``q`` = quality 1..100 (``write_spatial(qt=Q)``); everything else is MozJPEG's default (progressive, trellis
quantisation, its default quant tables), as ``cjpeg -quality Q`` from MozJPEG writes it. Option ``subsampling``
(default 4:2:0). jpeglib's ``samp_factor`` is (vertical, horizontal) per component, so 4:2:2 is ``(1, 2)`` for luma.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import numpy as np

from .base import SUBSAMPLING, Codec, QualityKnob, package_version, pillow_decode
from .registry import register_codec

MOZJPEG = "mozjpeg403"
SAMP_FACTORS = {
    "444": ((1, 1), (1, 1), (1, 1)),
    "422": ((1, 2), (1, 1), (1, 1)),
    "420": ((2, 2), (1, 1), (1, 1)),
}


@register_codec("mozjpeg")
class MozjpegCodec(QualityKnob, Codec):
    """JPEG by MozJPEG 4.0.3 through jpeglib, at MozJPEG's defaults."""

    in_default_spec = False

    aliases = ("moz",)
    library = "mozjpeg"
    binding = "jpeglib"
    knob_min = 1
    extension = "jpg"
    description = (
        "MozJPEG quality (cjpeg -quality), MozJPEG defaults (progressive, trellis), 4:2:0 unless chosen"
    )
    options = (SUBSAMPLING,)

    def unavailable(self) -> str | None:
        try:
            import jpeglib
        except ImportError:
            return "jpeglib is not installed (pip install jpeglib)"
        if MOZJPEG not in jpeglib.version.versions():
            return f"this jpeglib has no {MOZJPEG}"
        return None

    def version(self) -> str:
        digits = MOZJPEG.removeprefix("mozjpeg")
        return f"{'.'.join(digits)} (jpeglib {package_version('jpeglib')})"

    def encode(self, rgb: np.ndarray, value: float, options: Mapping[str, str] | None = None) -> bytes:
        import jpeglib

        o = self.resolve(options)
        fd, path = tempfile.mkstemp(suffix=".jpg")  # jpeglib writes to a file path only
        os.close(fd)
        try:
            with jpeglib.version(MOZJPEG):
                jpeg = jpeglib.from_spatial(np.ascontiguousarray(rgb, dtype=np.uint8))
                jpeg.samp_factor = SAMP_FACTORS[o["subsampling"]]
                jpeg.write_spatial(path, qt=int(value))
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)

    def decode(self, data: bytes) -> np.ndarray:
        return pillow_decode(data)
