"""JPEG XL through imagecodecs: ``jxl``, libjxl. ``d`` = Butteraugli distance 0..25 (``cjxl -d``): 0 is lossless,
1 visually lossless, higher is smaller and worse; option ``effort`` 1..10 (default 7, libjxl's), one thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from .base import Codec, Option
from .registry import register_codec


@register_codec("jxl")
class JpegXlCodec(Codec):
    """JPEG XL by libjxl through imagecodecs: Butteraugli distance, effort 7, one thread."""

    aliases = ("jpegxl", "jpeg-xl")
    library = "libjxl"
    binding = "imagecodecs"
    knob = "d"
    knob_aliases = ("distance",)
    knob_min, knob_max = 0, 25
    integer_knob = False
    knob_step = 0.01
    higher_is_better_quality = False
    extension = "jxl"
    default_values = (4, 2.5, 1.5, 1, 0.5)
    description = "Butteraugli distance (cjxl -d; 0 lossless, 1 visually lossless), effort 7, 1 thread"
    effort: ClassVar[int] = 7
    options = (Option.integer("effort", 1, 10, effort),)

    def unavailable(self) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed (pip install imagecodecs)"
        return None if imagecodecs.JPEGXL.available else "imagecodecs was built without libjxl"

    def version(self) -> str:
        import imagecodecs

        return str(imagecodecs.jpegxl_version()).removeprefix("libjxl").strip()

    def encode(self, rgb: np.ndarray, value: float, options: Mapping[str, str] | None = None) -> bytes:
        import imagecodecs

        lossless = float(value) == 0.0  # as cjxl -d 0: mathematically lossless (modular mode)
        data = imagecodecs.jpegxl_encode(
            np.ascontiguousarray(rgb),
            distance=float(value),
            lossless=lossless,
            effort=int(self.resolve(options)["effort"]),
            numthreads=1,
        )
        return bytes(data)

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        out = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=2)
        return np.ascontiguousarray(out[..., :3], dtype=np.uint8)
