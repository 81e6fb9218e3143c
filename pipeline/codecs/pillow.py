"""The codecs Pillow runs (every encoder single-threaded, so results are reproducible and the throughput measured
is per CPU core):

- ``jpeg``: libjpeg-turbo through Pillow. ``q`` = Pillow/libjpeg quality 1..100, 4:2:0 chroma subsampling,
  optimised Huffman tables (what ``cjpeg -optimize`` does), baseline (not progressive).
- ``webp``: libwebp through Pillow, lossy. ``q`` = quality 0..100, method 4 (libwebp's default).
- ``avif``: libavif through Pillow with the aom AV1 encoder. ``q`` = quality 0..100, speed 6 (libavif's default
  speed), 4:2:0, full range.
- ``jp2``: JPEG 2000, OpenJPEG through Pillow. ``ratio`` = compression ratio (OpenJPEG's ``opj_compress -r``), one
  quality layer, irreversible 9/7 wavelet with the colour transform; 1 sets no rate limit (near-lossless: the 9/7
  wavelet is not reversible), higher is smaller and worse.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import PillowCodec
from .registry import register_codec


@register_codec("jpeg")
class JpegCodec(PillowCodec):
    """JPEG by libjpeg-turbo through Pillow: 4:2:0, optimised Huffman tables, baseline."""

    aliases = ("jpg",)
    library = "libjpeg-turbo"
    knob = "q"
    knob_aliases = ("quality",)
    knob_min, knob_max = 1, 100
    extension = "jpg"
    default_values = (20, 40, 60, 80, 90)
    description = "Pillow quality (libjpeg scaling of the IJG tables), 4:2:0, optimised Huffman, baseline"
    pillow_format = "JPEG"
    pillow_feature = "jpg"

    def version(self) -> str:
        from PIL import features

        if features.check("libjpeg_turbo"):
            return str(features.version("libjpeg_turbo"))
        return f"libjpeg {features.version('jpg')}"

    def save_options(self, value: float) -> dict[str, Any]:
        return {"quality": int(value), "subsampling": "4:2:0", "optimize": True}


@register_codec("webp")
class WebpCodec(PillowCodec):
    """Lossy WebP by libwebp through Pillow, method 4."""

    library = "libwebp"
    knob = "q"
    knob_aliases = ("quality",)
    knob_min, knob_max = 0, 100
    extension = "webp"
    default_values = (20, 40, 60, 80, 90)
    description = "libwebp lossy quality, method 4 (default), 4:2:0"
    pillow_format = "WEBP"
    pillow_feature = "webp"

    def save_options(self, value: float) -> dict[str, Any]:
        return {"quality": int(value), "method": 4, "lossless": False, "exact": False}


@register_codec("avif")
class AvifCodec(PillowCodec):
    """AVIF by libavif through Pillow, with the aom AV1 encoder at speed 6, one thread."""

    library = "libavif"
    knob = "q"
    knob_aliases = ("quality",)
    knob_min, knob_max = 0, 100
    extension = "avif"
    default_values = (20, 40, 60, 80, 90)
    description = (
        "libavif quality (maps to AV1 quantizers), aom encoder, speed 6, 4:2:0, full range, 1 thread"
    )
    pillow_format = "AVIF"
    pillow_feature = "avif"
    speed: ClassVar[int] = 6

    @staticmethod
    def _encoder() -> str:
        from PIL import _avif

        return "aom" if _avif.encoder_codec_available("aom") else "auto"

    def version(self) -> str:
        from PIL import _avif, features

        encoders = [v for v in _avif.codec_versions().split(", ") if "[enc]" in v]
        if self._encoder() == "aom":
            encoders = [v for v in encoders if v.startswith("aom")]
        detail = ", ".join(v.replace(" [enc]:", " ") for v in encoders)
        return f"{features.version('avif')} ({detail})" if detail else str(features.version("avif"))

    def save_options(self, value: float) -> dict[str, Any]:
        return {
            "quality": int(value),
            "speed": self.speed,
            "subsampling": "4:2:0",
            "range": "full",
            "codec": self._encoder(),
            "max_threads": 1,
        }


@register_codec("jp2")
class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 by OpenJPEG through Pillow: target compression ratio, one layer, 9/7 wavelet with colour transform."""

    aliases = ("jpeg2000", "j2k", "jpeg-2000")
    library = "OpenJPEG"
    knob = "ratio"
    knob_aliases = ("r", "rate", "rates")
    knob_min, knob_max = 1, 1000
    integer_knob = False
    higher_is_better_quality = False
    extension = "jp2"
    default_values = (100, 50, 25, 12)
    description = (
        "compression ratio (opj_compress -r), 1 layer, irreversible 9/7 wavelet, colour transform, JP2 box"
    )
    pillow_format = "JPEG2000"
    pillow_feature = "jpg_2000"

    def save_options(self, value: float) -> dict[str, Any]:
        return {"quality_mode": "rates", "quality_layers": [float(value)], "irreversible": True, "mct": 1}
