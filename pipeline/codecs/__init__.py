"""Image codecs that `prfeval sweep` runs, and the spec that says which settings to run: each codec is a class
registered by name with its metadata and encoder options beside it (:mod:`.base`, :mod:`.registry`); JPEG
(libjpeg-turbo), WebP, AVIF, JPEG 2000 and HEIC run through Pillow (:mod:`.pillow`), JPEG XL through imagecodecs
(:mod:`.jxl`), jpegli through a small C shim over pyjpegli (:mod:`.jpegli`), MozJPEG through jpeglib
(:mod:`.mozjpeg`); :mod:`.spec` parses ``jpeg:q=20,40;subsampling=444 jxl:d=1 avif:bpp=0.15`` or a TOML/YAML file
into settings.
"""

from __future__ import annotations

from .base import Codec, Option, PillowCodec

# Registration order is the order codecs are listed, described and swept in: the Pillow family, then JPEG XL,
# then the other JPEG encoders.
from .pillow import AvifCodec, HeicCodec, Jpeg2000Codec, JpegCodec, WebpCodec  # isort: split

from .jxl import JpegXlCodec  # isort: split

from .jpegli import JpegliCodec  # isort: split

from .mozjpeg import MozjpegCodec  # isort: split

from .registry import REGISTRY, SpecError, describe_codecs, get_codec, list_codecs, register_codec
from .spec import Setting, default_spec, parse_inline, parse_spec, parse_value

DEFAULT_SPEC = default_spec()
"""Every registered codec at its default settings, as an inline spec."""

__all__ = [
    "DEFAULT_SPEC",
    "REGISTRY",
    "AvifCodec",
    "Codec",
    "HeicCodec",
    "Jpeg2000Codec",
    "JpegCodec",
    "JpegXlCodec",
    "JpegliCodec",
    "MozjpegCodec",
    "Option",
    "PillowCodec",
    "Setting",
    "SpecError",
    "WebpCodec",
    "default_spec",
    "describe_codecs",
    "get_codec",
    "list_codecs",
    "parse_inline",
    "parse_spec",
    "parse_value",
    "register_codec",
]
