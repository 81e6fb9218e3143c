"""The codecs Pillow runs (every encoder single-threaded, so results are reproducible and the throughput measured
is per CPU core):

- ``jpeg``: libjpeg-turbo through Pillow. ``q`` = Pillow/libjpeg quality 1..100. Options: ``subsampling`` (default
  4:2:0), ``optimize`` (optimised Huffman tables as ``cjpeg -optimize``, default on), ``progressive`` (default off).
- ``webp``: libwebp through Pillow, lossy (always 4:2:0). ``q`` = quality 0..100; option ``method`` 0..6 (libwebp's
  effort, default 4; alias ``effort``).
- ``avif``: libavif through Pillow with the aom AV1 encoder. ``q`` = quality 0..100, full range. Options: ``speed``
  0..10 (default 6, libavif's default; lower is slower and better), ``subsampling`` (default 4:2:0).
- ``jp2``: JPEG 2000, OpenJPEG through Pillow. ``ratio`` = compression ratio (OpenJPEG's ``opj_compress -r``), one
  quality layer, irreversible 9/7 wavelet with the colour transform; 1 sets no rate limit (near-lossless: the 9/7
  wavelet is not reversible), higher is smaller and worse.
- ``heic``: HEVC in HEIF by libheif with the x265 encoder, through pillow-heif. ``q`` = quality 0..100; option
  ``subsampling`` (default 4:2:0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import SUBSAMPLING, Option, PillowCodec, QualityKnob
from .registry import register_codec

_PILLOW_SUBSAMPLING = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}


@register_codec("jpeg")
class JpegCodec(QualityKnob, PillowCodec):
    """JPEG by libjpeg-turbo through Pillow: 4:2:0, optimised Huffman tables, baseline."""

    aliases = ("jpg",)
    library = "libjpeg-turbo"
    knob_min = 1
    extension = "jpg"
    description = "Pillow quality (libjpeg scaling of the IJG tables), 4:2:0, optimised Huffman, baseline"
    pillow_format = "JPEG"
    pillow_feature = "jpg"
    options = (SUBSAMPLING, Option.switch("optimize", True), Option.switch("progressive", False))

    def version(self) -> str:
        from PIL import features

        if features.check("libjpeg_turbo"):
            return str(features.version("libjpeg_turbo"))
        return f"libjpeg {features.version('jpg')}"

    def save_options(self, value: float, options: Mapping[str, str]) -> dict[str, Any]:
        out = {
            "quality": int(value),
            "subsampling": _PILLOW_SUBSAMPLING[options["subsampling"]],
            "optimize": options["optimize"] == "1",
        }
        if options["progressive"] == "1":
            out["progressive"] = True
        return out


@register_codec("webp")
class WebpCodec(QualityKnob, PillowCodec):
    """Lossy WebP by libwebp through Pillow, method 4."""

    library = "libwebp"
    extension = "webp"
    description = "libwebp lossy quality, method 4 (default), 4:2:0"
    pillow_format = "WEBP"
    pillow_feature = "webp"
    options = (Option.integer("method", 0, 6, 4, aliases=("effort",)),)

    def save_options(self, value: float, options: Mapping[str, str]) -> dict[str, Any]:
        return {"quality": int(value), "method": int(options["method"]), "lossless": False, "exact": False}


@register_codec("avif")
class AvifCodec(QualityKnob, PillowCodec):
    """AVIF by libavif through Pillow, with the aom AV1 encoder at speed 6, one thread."""

    library = "libavif"
    extension = "avif"
    description = (
        "libavif quality (maps to AV1 quantizers), aom encoder, speed 6, 4:2:0, full range, 1 thread"
    )
    pillow_format = "AVIF"
    pillow_feature = "avif"
    speed: ClassVar[int] = 6
    options = (Option.integer("speed", 0, 10, speed), SUBSAMPLING)

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

    def save_options(self, value: float, options: Mapping[str, str]) -> dict[str, Any]:
        return {
            "quality": int(value),
            "speed": int(options["speed"]),
            "subsampling": _PILLOW_SUBSAMPLING[options["subsampling"]],
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
    knob_step = 0.1
    higher_is_better_quality = False
    extension = "jp2"
    default_values = (100, 50, 25, 12)
    description = (
        "compression ratio (opj_compress -r), 1 layer, irreversible 9/7 wavelet, colour transform, JP2 box"
    )
    pillow_format = "JPEG2000"
    pillow_feature = "jpg_2000"

    def save_options(self, value: float, options: Mapping[str, str]) -> dict[str, Any]:
        return {"quality_mode": "rates", "quality_layers": [float(value)], "irreversible": True, "mct": 1}


@register_codec("heic")
class HeicCodec(QualityKnob, PillowCodec):
    """HEIC (HEVC in HEIF) by libheif with x265, through pillow-heif's Pillow plugin: quality, 4:2:0 by default."""

    aliases = ("heif",)
    library = "libheif"
    binding = "pillow-heif"
    extension = "heic"
    in_default_spec = False
    default_values = (30, 50, 70, 90)
    description = "libheif quality (x265 HEVC encoder, default preset), 4:2:0 unless chosen"
    pillow_format = "HEIF"
    options = (SUBSAMPLING,)

    def unavailable(self) -> str | None:
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif is not installed (pip install pillow-heif)"
        if not pillow_heif.libheif_info().get("HEIF"):
            return "pillow-heif's libheif has no HEVC encoder"
        return None

    def prepare(self) -> None:
        import pillow_heif

        pillow_heif.register_heif_opener()

    def version(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        encoder = str(info.get("HEIF") or "").replace(" HEVC encoder", "").split(" (")
        detail = f"{encoder[0]} {encoder[1].split('+')[0]}" if len(encoder) > 1 else encoder[0]
        return f"{pillow_heif.libheif_version()} ({detail})" if detail else str(pillow_heif.libheif_version())

    def save_options(self, value: float, options: Mapping[str, str]) -> dict[str, Any]:
        return {"quality": int(value), "chroma": int(options["subsampling"])}
