"""Image codecs that `prfeval sweep` runs, and the spec that says which settings to run.

Each codec is a class registered by name (``@register_codec("jpeg")``); its metadata sits next to it: the library
and its version, the quality knob the codec itself exposes (its name, range and direction), the file extension of its
bitstream. Generic code reads that metadata and never special-cases a codec name.

Registered codecs and their knobs (every encoder single-threaded, so results are reproducible and the throughput
measured is per CPU core):

- ``jpeg``: libjpeg-turbo through Pillow. ``q`` = Pillow/libjpeg quality 1..100, 4:2:0 chroma subsampling,
  optimised Huffman tables (what ``cjpeg -optimize`` does), baseline (not progressive).
- ``webp``: libwebp through Pillow, lossy. ``q`` = quality 0..100, method 4 (libwebp's default).
- ``avif``: libavif through Pillow with the aom AV1 encoder. ``q`` = quality 0..100, speed 6 (libavif's default
  speed), 4:2:0, full range.
- ``jp2``: JPEG 2000, OpenJPEG through Pillow. ``ratio`` = compression ratio (OpenJPEG's ``opj_compress -r``), one
  quality layer, irreversible 9/7 wavelet with the colour transform; 1 sets no rate limit (near-lossless: the 9/7
  wavelet is not reversible), higher is smaller and worse.
- ``jxl``: JPEG XL, libjxl through imagecodecs. ``d`` = Butteraugli distance 0..25 (``cjxl -d``): 0 is lossless,
  1 visually lossless, higher is smaller and worse; effort 7 (libjxl's default).

A spec names codecs and settings, inline or as a TOML/YAML file:

    jpeg:q=20,40,60,80 webp:q=30,60,90 jxl:d=1,3

    # sweep.toml                       # sweep.yaml
    [jpeg]                             jpeg: {q: [20, 40, 60, 80]}
    q = [20, 40, 60, 80]               jxl: {d: [1.0, 3.0]}

A codec named without settings (``jpeg``) runs its default settings. Mistakes raise :class:`SpecError`, which
says what is available.
"""

from __future__ import annotations

import difflib
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.io import storage


class SpecError(ValueError):
    """A codec spec that cannot be used: unknown codec or knob, a value out of range, a malformed entry."""


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
        return f"{self.knob}={_fmt(self.knob_min)}..{_fmt(self.knob_max)} ({direction} is better quality)"

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
            "binding": f"{self.binding} {_package_version(self.binding)}",
        }


REGISTRY: dict[str, Codec] = {}
_ALIASES: dict[str, str] = {}


def register_codec(name: str) -> Callable[[type[Codec]], type[Codec]]:
    """Class decorator: register a :class:`Codec` subclass under ``name`` (the name users type and results carry)."""

    def wrap(cls: type[Codec]) -> type[Codec]:
        if name in REGISTRY:
            raise ValueError(f"codec '{name}' is already registered")
        cls.name = name
        REGISTRY[name] = cls()
        for alias in cls.aliases:
            _ALIASES[alias] = name
        return cls

    return wrap


def list_codecs() -> list[str]:
    """Names of the registered codecs, in registration order."""
    return list(REGISTRY)


def describe_codecs() -> str:
    """One line per codec: its knob and range, and why it is unavailable if it is."""
    lines = []
    for codec in REGISTRY.values():
        reason = codec.unavailable()
        note = f"  [unavailable: {reason}]" if reason else ""
        lines.append(f"  {codec.name:<5} {codec.knob_range()}  {codec.library}{note}")
    return "\n".join(lines)


def get_codec(name: str) -> Codec:
    """The registered codec called ``name`` (or one of its aliases); unknown names get a suggestion."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, [*REGISTRY, *_ALIASES], n=1)
    hint = f" (did you mean '{_ALIASES.get(close[0], close[0])}'?)" if close else ""
    raise SpecError(f"unknown codec '{name}'{hint}; available codecs:\n{describe_codecs()}")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _pillow_encode(rgb: np.ndarray, fmt: str, **options: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format=fmt, **options)
    return buf.getvalue()


def _pillow_decode(data: bytes) -> np.ndarray:
    """Decode one of our own bitstreams with Pillow (the size guard was applied to the reference already)."""
    from PIL import Image

    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _pillow_feature(feature: str) -> str | None:
    from PIL import features

    return None if features.check(feature) else f"Pillow was built without {feature}"


@register_codec("jpeg")
class JpegCodec(Codec):
    """JPEG by libjpeg-turbo through Pillow: 4:2:0, optimised Huffman tables, baseline."""

    aliases = ("jpg",)
    library = "libjpeg-turbo"
    knob = "q"
    knob_aliases = ("quality",)
    knob_min, knob_max = 1, 100
    extension = "jpg"
    default_values = (20, 40, 60, 80, 90)
    description = "Pillow quality (libjpeg scaling of the IJG tables), 4:2:0, optimised Huffman, baseline"

    def unavailable(self) -> str | None:
        return _pillow_feature("jpg")

    def version(self) -> str:
        from PIL import features

        if features.check("libjpeg_turbo"):
            return str(features.version("libjpeg_turbo"))
        return f"libjpeg {features.version('jpg')}"

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        return _pillow_encode(rgb, "JPEG", quality=int(value), subsampling="4:2:0", optimize=True)

    def decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)


@register_codec("webp")
class WebpCodec(Codec):
    """Lossy WebP by libwebp through Pillow, method 4."""

    library = "libwebp"
    knob = "q"
    knob_aliases = ("quality",)
    knob_min, knob_max = 0, 100
    extension = "webp"
    default_values = (20, 40, 60, 80, 90)
    description = "libwebp lossy quality, method 4 (default), 4:2:0"

    def unavailable(self) -> str | None:
        return _pillow_feature("webp")

    def version(self) -> str:
        from PIL import features

        return str(features.version("webp"))

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        return _pillow_encode(rgb, "WEBP", quality=int(value), method=4, lossless=False, exact=False)

    def decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)


@register_codec("avif")
class AvifCodec(Codec):
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
    speed: ClassVar[int] = 6

    def unavailable(self) -> str | None:
        return _pillow_feature("avif")

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

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        return _pillow_encode(
            rgb,
            "AVIF",
            quality=int(value),
            speed=self.speed,
            subsampling="4:2:0",
            range="full",
            codec=self._encoder(),
            max_threads=1,
        )

    def decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)


@register_codec("jp2")
class Jpeg2000Codec(Codec):
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

    def unavailable(self) -> str | None:
        return _pillow_feature("jpg_2000")

    def version(self) -> str:
        from PIL import features

        return str(features.version("jpg_2000"))

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        return _pillow_encode(
            rgb, "JPEG2000", quality_mode="rates", quality_layers=[float(value)], irreversible=True, mct=1
        )

    def decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)


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
    higher_is_better_quality = False
    extension = "jxl"
    default_values = (4, 2.5, 1.5, 1, 0.5)
    description = "Butteraugli distance (cjxl -d; 0 lossless, 1 visually lossless), effort 7, 1 thread"
    effort: ClassVar[int] = 7

    def unavailable(self) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed (pip install imagecodecs)"
        return None if imagecodecs.JPEGXL.available else "imagecodecs was built without libjxl"

    def version(self) -> str:
        import imagecodecs

        return str(imagecodecs.jpegxl_version()).removeprefix("libjxl").strip()

    def encode(self, rgb: np.ndarray, value: float) -> bytes:
        import imagecodecs

        lossless = float(value) == 0.0  # as cjxl -d 0: mathematically lossless (modular mode)
        data = imagecodecs.jpegxl_encode(
            np.ascontiguousarray(rgb),
            distance=float(value),
            lossless=lossless,
            effort=self.effort,
            numthreads=1,
        )
        return bytes(data)

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        out = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=2)
        return np.ascontiguousarray(out[..., :3], dtype=np.uint8)


# --- the spec -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One codec at one knob value. ``text`` is the setting as given (``q=40``) and lands in the manifest."""

    codec: str
    knob: str
    value: float
    text: str

    @property
    def slug(self) -> str:
        """A file-name-safe form of the setting: ``q=40`` -> ``q40``, ``d=1.5`` -> ``d1.5``."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.text.replace("=", "", 1))


_SPEC_FILE_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def parse_value(codec: Codec, knob: str, raw: Any) -> Setting:
    """Check one knob value against the codec's metadata and return the :class:`Setting`."""
    if knob.lower() != codec.knob and knob.lower() not in codec.knob_aliases:
        raise SpecError(f"{codec.name} has no knob '{knob}'; it takes {codec.knob_range()}")
    text = str(raw).strip()
    if isinstance(raw, bool) or text == "":
        raise SpecError(f"{codec.name}: '{text}' is not a number; {codec.name} takes {codec.knob_range()}")
    try:
        value = float(text)
    except ValueError:
        raise SpecError(
            f"{codec.name}: '{text}' is not a number; {codec.name} takes {codec.knob_range()}"
        ) from None
    if not math.isfinite(value) or not codec.knob_min <= value <= codec.knob_max:
        raise SpecError(
            f"{codec.name}: {codec.knob}={text} is out of range; {codec.name} takes {codec.knob_range()}"
        )
    if codec.integer_knob:
        if not value.is_integer():
            raise SpecError(f"{codec.name}: {codec.knob} takes whole numbers, not {text}")
        value = int(value)
    return Setting(codec=codec.name, knob=codec.knob, value=value, text=f"{codec.knob}={text}")


def _settings_for(codec_name: str, body: Any) -> list[Setting]:
    codec = get_codec(codec_name)
    reason = codec.unavailable()
    if reason:
        raise SpecError(
            f"codec '{codec.name}' is not available here: {reason}; available codecs:\n{describe_codecs()}"
        )
    if body is None or body == {} or body == "":
        return [parse_value(codec, codec.knob, v) for v in codec.default_values]
    if isinstance(body, str):
        return _parse_inline_body(codec, body)
    if not isinstance(body, Mapping):
        raise SpecError(f"{codec.name}: expected a mapping like {{{codec.knob}: [values]}}, got {body!r}")
    out: list[Setting] = []
    for knob, values in body.items():
        items = values if isinstance(values, Sequence) and not isinstance(values, str) else [values]
        if isinstance(values, str):
            items = [v for v in values.split(",") if v.strip()]
        if not items:
            raise SpecError(f"{codec.name}: no values for '{knob}'; it takes {codec.knob_range()}")
        out += [parse_value(codec, str(knob), v) for v in items]
    return out


def _parse_inline_body(codec: Codec, body: str) -> list[Setting]:
    out: list[Setting] = []
    for part in body.split(";"):
        if not part.strip():
            continue
        knob, sep, values = part.partition("=")
        items = [v for v in values.split(",") if v.strip()]
        if not sep or not items:
            raise SpecError(f"{codec.name}: expected '{codec.knob}=v1,v2,...' but got '{part}'")
        out += [parse_value(codec, knob.strip(), v) for v in items]
    return out


def parse_inline(spec: str) -> list[Setting]:
    """Parse ``codec:knob=v1,v2 codec2:knob=...`` (a bare codec name runs its default settings)."""
    out: list[Setting] = []
    for token in spec.split():
        name, _, body = token.partition(":")
        if not name:
            raise SpecError(f"'{token}': expected codec:knob=v1,v2,...")
        out += _settings_for(name, body)
    return out


def _parse_mapping(spec: Mapping[str, Any]) -> list[Setting]:
    if set(spec) == {"codecs"} and isinstance(spec["codecs"], Mapping):
        spec = spec["codecs"]
    out: list[Setting] = []
    for name, body in spec.items():
        out += _settings_for(str(name), body)
    return out


def _load_spec_file(uri: str) -> Mapping[str, Any]:
    shown = storage.display(uri)
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        raise SpecError(f"codec spec file {shown} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read codec spec file {shown}: {storage.redact(str(e))}") from None
    lower = uri.lower()
    try:
        if lower.endswith(".toml"):
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # the parsers' error types differ; all mean "not a valid spec file"
        raise SpecError(
            f"codec spec file {shown} is not valid {lower.rsplit('.', 1)[-1].upper()}: {e}"
        ) from None
    if not isinstance(data, Mapping) or not data:
        raise SpecError(f"codec spec file {shown} should map codec names to {{knob: [values]}}")
    return data


def parse_spec(spec: str | Mapping[str, Any]) -> list[Setting]:
    """Settings from an inline spec, a TOML/YAML spec file (any URI) or a mapping, de-duplicated, in order.

    Raises :class:`SpecError` (with what is available) for an unknown codec or knob, or a value out of range.
    """
    if isinstance(spec, Mapping):
        settings = _parse_mapping(spec)
    else:
        text = spec.strip()
        if not text:
            raise SpecError(f"empty codec spec; available codecs:\n{describe_codecs()}")
        is_file = text.lower().endswith(_SPEC_FILE_SUFFIXES) or (
            storage.is_local(text) and ":" not in text.split("/")[-1] and storage.exists(text)
        )
        settings = _parse_mapping(_load_spec_file(text)) if is_file else parse_inline(text)
    seen: set[tuple[str, float]] = set()
    unique = []
    for s in settings:
        if (s.codec, s.value) not in seen:
            seen.add((s.codec, s.value))
            unique.append(s)
    if not unique:
        raise SpecError(f"the codec spec names no settings; available codecs:\n{describe_codecs()}")
    return unique


DEFAULT_SPEC = " ".join(
    f"{c.name}:{c.knob}={','.join(_fmt(v) for v in c.default_values)}" for c in REGISTRY.values()
)
"""Every registered codec at its default settings, as an inline spec."""
