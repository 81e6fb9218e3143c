"""Image codecs that `prfeval sweep` runs, and the spec that says which settings to run: each codec is a class
registered by name with its metadata beside it (:mod:`.base`, :mod:`.registry`); JPEG, WebP, AVIF and JPEG 2000 run
through Pillow (:mod:`.pillow`), JPEG XL through imagecodecs (:mod:`.jxl`); :mod:`.spec` parses
``jpeg:q=20,40 jxl:d=1`` or a TOML/YAML file into settings.
"""

from __future__ import annotations

from .base import Codec, PillowCodec

# Registration order is the order codecs are listed, described and swept in: the Pillow family, then JPEG XL.
from .pillow import AvifCodec, Jpeg2000Codec, JpegCodec, WebpCodec  # isort: split

from .jxl import JpegXlCodec  # isort: split

from .registry import REGISTRY, SpecError, describe_codecs, get_codec, list_codecs, register_codec
from .spec import Setting, default_spec, parse_inline, parse_spec, parse_value

DEFAULT_SPEC = default_spec()
"""Every registered codec at its default settings, as an inline spec."""

__all__ = [
    "DEFAULT_SPEC",
    "REGISTRY",
    "AvifCodec",
    "Codec",
    "Jpeg2000Codec",
    "JpegCodec",
    "JpegXlCodec",
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
