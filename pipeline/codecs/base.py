"""The codec base classes: :class:`Codec` (metadata as class attributes, ``encode``/``decode``) and
:class:`PillowCodec`, which holds the one Pillow encode and decode of every codec that runs through Pillow.

Generic code reads a codec's metadata (the library and its version, the quality knob the codec itself exposes, its
name, range and direction, the file extension of its bitstream) and never special-cases a codec name.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np


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
    higher_is_better_quality: ClassVar[bool] = True
    extension: ClassVar[str] = ""
    default_values: ClassVar[tuple[float, ...]] = ()
    description: ClassVar[str] = ""

    def version(self) -> str:
        """The version of the library that encodes (and of its AV1 encoder etc. where that matters)."""
        raise NotImplementedError

    def unavailable(self) -> str | None:
        """Why this codec cannot run in this installation, or None when it can."""
        return None

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        """Encode an (H, W, 3) uint8 RGB array at knob ``value``; the bitstream is returned whole."""
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
            "binding": f"{self.binding} {package_version(self.binding)}",
        }


class PillowCodec(Codec):
    """A codec whose library Pillow calls: ``pillow_format`` is the format Pillow writes, ``pillow_feature`` the
    Pillow feature that must be compiled in, :meth:`save_options` the encoder options at one knob value.

    Encoding and decoding are the same for all of them; decoding lifts Pillow's pixel limit, because these are our
    own bitstreams of references that passed the size guard already.
    """

    pillow_format: ClassVar[str] = ""
    pillow_feature: ClassVar[str] = ""

    def save_options(self, value: float) -> dict[str, Any]:
        """Pillow's ``Image.save`` options for knob ``value``."""
        raise NotImplementedError

    def unavailable(self) -> str | None:
        from PIL import features

        return (
            None if features.check(self.pillow_feature) else f"Pillow was built without {self.pillow_feature}"
        )

    def version(self) -> str:
        from PIL import features

        return str(features.version(self.pillow_feature))

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(
            buf, format=self.pillow_format, **self.save_options(value)
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
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
