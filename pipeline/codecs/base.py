"""The codec base classes: :class:`Codec` (metadata as class attributes, ``encode``/``decode``) and
:class:`PillowCodec`, which holds the one Pillow encode and decode of every codec that runs through Pillow.

Generic code reads a codec's metadata (the library and its version, the quality knob the codec itself exposes, its
name, range and direction, its encoder :class:`Option` s with their defaults, the file extension of its bitstream)
and never special-cases a codec name.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Option:
    """An encoder option beside the knob (``subsampling``, ``effort`` ...): its allowed values as typed, and default.

    Values are kept as the strings users type (``420``, ``1``); the codec converts them when it encodes.
    """

    name: str
    choices: tuple[str, ...]
    default: str
    aliases: tuple[str, ...] = ()

    @classmethod
    def integer(cls, name: str, low: int, high: int, default: int, aliases: tuple[str, ...] = ()) -> Option:
        return cls(name, tuple(str(i) for i in range(low, high + 1)), str(default), aliases)

    @classmethod
    def switch(cls, name: str, default: bool, aliases: tuple[str, ...] = ()) -> Option:
        return cls(name, ("0", "1"), "1" if default else "0", aliases)

    def normalise(self, raw: Any) -> str | None:
        """The value as stored (``4:2:0`` -> ``420``, ``true`` -> ``1``), or None when it is not allowed."""
        text = str(raw).strip().lower().replace(":", "")
        text = {"true": "1", "false": "0", "yes": "1", "no": "0", "on": "1", "off": "0"}.get(text, text)
        if text.endswith(".0") and text[:-2].isdigit():
            text = text[:-2]
        return text if text in self.choices else None

    def allowed(self) -> str:
        """The allowed values as a user reads them: ``444|422|420`` or ``1..10``."""
        ints = [int(c) for c in self.choices] if all(c.isdigit() for c in self.choices) else []
        if len(ints) > 3 and ints == list(range(ints[0], ints[0] + len(ints))):
            return f"{ints[0]}..{ints[-1]}"
        return "|".join(self.choices)

    def describe(self) -> str:
        return f"{self.name}={self.allowed()} (default {self.default})"


SUBSAMPLING = Option("subsampling", ("444", "422", "420"), "420", aliases=("chroma", "sampling"))
"""Chroma subsampling, as the JPEG-family encoders, AVIF and HEIC take it; 4:2:0 unless chosen."""


class Codec:
    """A registered codec: metadata as class attributes, ``encode``/``decode`` as methods.

    Subclasses set the class attributes and implement :meth:`encode` and :meth:`decode`; :meth:`version` reports
    the version of the library that does the work, and :meth:`unavailable` says why it cannot run here (or None).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    library: ClassVar[str] = ""
    binding: ClassVar[str] = (
        "pillow"  # the Python package that calls the library (its version is recorded too)
    )
    knob: ClassVar[str] = ""
    knob_aliases: ClassVar[tuple[str, ...]] = ()
    knob_min: ClassVar[float] = 0.0
    knob_max: ClassVar[float] = 100.0
    integer_knob: ClassVar[bool] = True
    knob_step: ClassVar[float] = 1.0  # the finest knob step a bpp= target searches (whole numbers: 1)
    higher_is_better_quality: ClassVar[bool] = True
    extension: ClassVar[str] = ""
    default_values: ClassVar[tuple[float, ...]] = ()
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    # in the sweep's default spec; the slow encoders (MozJPEG, HEIC: 30 to 200 times libjpeg-turbo's cost per
    # megapixel, docs/benchmarks.md) run only when named
    in_default_spec: ClassVar[bool] = True

    def option(self, name: str) -> Option | None:
        """The option called ``name`` (or one of its aliases), or None."""
        key = name.strip().lower()
        return next((o for o in self.options if key == o.name or key in o.aliases), None)

    def resolve(self, options: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every option of this codec, the given ones (already checked by the spec) over the defaults."""
        given = dict(options or {})
        return {o.name: given.get(o.name, o.default) for o in self.options}

    def describe_options(self) -> str:
        """The options as a user reads them, e.g. ``subsampling=444|422|420 (default 420)``; '' when there are none."""
        return ", ".join(o.describe() for o in self.options)

    def version(self) -> str:
        """The version of the library that encodes (and of its AV1 encoder etc. where that matters)."""
        raise NotImplementedError

    def unavailable(self) -> str | None:
        """Why this codec cannot run in this installation, or None when it can."""
        return None

    def encode(self, rgb: np.ndarray, value: float, options: Mapping[str, str] | None = None) -> bytes:
        """Encode an (H, W, 3) uint8 RGB array at knob ``value`` with ``options`` (defaults where not given)."""
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        """Decode a bitstream of this codec to (H, W, 3) uint8 RGB."""
        raise NotImplementedError

    def knob_range(self) -> str:
        """The knob and its range as a user types it, e.g. ``q=1..100 (higher is better)``."""
        direction = "higher" if self.higher_is_better_quality else "lower"
        return f"{self.knob}={fmt(self.knob_min)}..{fmt(self.knob_max)} ({direction} is better quality)"

    def metadata(self, version: str | None = None) -> dict[str, Any]:
        """One row of the codecs table (``schemas.CODECS``) for this codec at ``version`` (default: installed)."""
        return {
            "codec": self.name,
            "codec_version": version or self.version(),
            "library": self.library,
            "knob": self.knob,
            "knob_min": float(self.knob_min),
            "knob_max": float(self.knob_max),
            "higher_is_better_quality": self.higher_is_better_quality,
            "description": self.description,
            "options": self.describe_options(),
            "binding": f"{self.binding} {package_version(self.binding)}",
        }


class QualityKnob:
    """The knob most encoders share: ``q`` (alias ``quality``), 0..100 unless a codec narrows it, swept at five
    qualities by default. Listed before the codec base class: ``class JpegCodec(QualityKnob, PillowCodec)``."""

    knob: ClassVar[str] = "q"
    knob_aliases: ClassVar[tuple[str, ...]] = ("quality",)
    knob_min: ClassVar[float] = 0
    knob_max: ClassVar[float] = 100
    default_values: ClassVar[tuple[float, ...]] = (20, 40, 60, 80, 90)


class PillowCodec(Codec):
    """A codec whose library Pillow calls: ``pillow_format`` is the format Pillow writes, ``pillow_feature`` the
    Pillow feature that must be compiled in, :meth:`save_options` the encoder options at one knob value.

    Encoding and decoding are the same for all of them; decoding lifts Pillow's pixel limit, because these are our
    own bitstreams of references that passed the size guard already.
    """

    pillow_format: ClassVar[str] = ""
    pillow_feature: ClassVar[str] = ""

    def save_options(self, value: float, options: Mapping[str, str]) -> dict[str, Any]:
        """Pillow's ``Image.save`` options for knob ``value`` and the codec's resolved ``options``."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything Pillow needs before it can write or read this format (a plugin to register); none by default."""

    def unavailable(self) -> str | None:
        from PIL import features

        return (
            None if features.check(self.pillow_feature) else f"Pillow was built without {self.pillow_feature}"
        )

    def version(self) -> str:
        from PIL import features

        return str(features.version(self.pillow_feature))

    def encode(self, rgb: np.ndarray, value: float, options: Mapping[str, str] | None = None) -> bytes:
        from PIL import Image

        self.prepare()
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(
            buf, format=self.pillow_format, **self.save_options(value, self.resolve(options))
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        self.prepare()
        return pillow_decode(data)


def pillow_decode(data: bytes) -> np.ndarray:
    """Decode any bitstream Pillow reads to (H, W, 3) uint8 RGB, without Pillow's pixel limit (our own files)."""
    from PIL import Image

    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def fmt(value: float) -> str:
    """A knob value as a user types it: ``40`` rather than ``40.0``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
