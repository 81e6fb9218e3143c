"""The codec spec: which codecs `prfeval sweep` runs at which settings, inline or as a TOML/YAML file::

    jpeg:q=20,40,60,80 webp:q=30,60,90 jxl:d=1,3
    jpeg:q=55,75,95;subsampling=420,444 jpegli:q=70 jxl:d=1,2;effort=7 avif:bpp=0.15,0.3

    # sweep.toml                       # sweep.yaml
    [jpeg]                             jpeg: {q: [20, 40, 60, 80], subsampling: [420, 444]}
    q = [20, 40, 60, 80]               jxl: {d: [1.0, 3.0]}
    subsampling = [420, 444]

Each codec takes ``name=v1,v2`` parts separated by ``;``: its quality knob (``q``, ``d``, ``ratio``), ``bpp`` (a
target bits per pixel: the sweep searches the knob per image, see :mod:`pipeline.sweep.encode`) and its encoder
options (``subsampling``, ``effort`` ...). Options with several values make a cross product with the knob values.
A codec named without knob values (``jpeg`` or ``jpeg:subsampling=444``) runs its default knob values. A setting's
text is the knob value followed by the options given, in the codec's order (``q=55;subsampling=444``); without
options it is the knob value alone, as before (``q=55``). Values are checked against the codec's metadata.
Mistakes raise :class:`SpecError`, which says what is available.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.io import storage

from .base import Codec, fmt
from .registry import REGISTRY, SpecError, describe_codecs, get_codec

TARGET = "bpp"
"""The knob name of a target bits per pixel, which every codec takes."""


@dataclass(frozen=True)
class Setting:
    """One codec at one knob value (or target bpp) with options. ``text`` is the setting as given (``q=40``,
    ``q=40;subsampling=444``, ``bpp=0.15``) and lands in the manifest; ``options`` are the options given."""

    codec: str
    knob: str  # the codec's knob, or "bpp" for a target bits per pixel
    value: float
    text: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def target_bpp(self) -> float | None:
        """The target bits per pixel of a ``bpp=`` setting, else None."""
        return float(self.value) if self.knob == TARGET else None

    @property
    def option_values(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def slug(self) -> str:
        """A file-name-safe form of the setting: ``q=40`` -> ``q40``, ``d=1.5;effort=3`` -> ``d1.5_effort3``."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.text.replace("=", ""))


_SPEC_FILE_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def _takes(codec: Codec) -> str:
    options = codec.describe_options() or "none"
    return f"it takes {codec.knob_range()} or {TARGET}=<target bits per pixel>; options: {options}"


def parse_value(codec: Codec, knob: str, raw: Any) -> Setting:
    """Check one knob value (or ``bpp`` target) against the codec's metadata and return the :class:`Setting`."""
    is_target = knob.strip().lower() == TARGET
    if not is_target and knob.lower() != codec.knob and knob.lower() not in codec.knob_aliases:
        raise SpecError(f"{codec.name} has no knob or option '{knob}'; {_takes(codec)}")
    text = str(raw).strip()
    what = f"{TARGET}=<positive bits per pixel>" if is_target else codec.knob_range()
    if isinstance(raw, bool) or text == "":
        raise SpecError(f"{codec.name}: '{text}' is not a number; {codec.name} takes {what}")
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{codec.name}: '{text}' is not a number; {codec.name} takes {what}") from None
    if is_target:
        if not math.isfinite(value) or value <= 0:
            raise SpecError(f"{codec.name}: {TARGET}={text} is not a positive number of bits per pixel")
        return Setting(codec=codec.name, knob=TARGET, value=value, text=f"{TARGET}={text}")
    if not math.isfinite(value) or not codec.knob_min <= value <= codec.knob_max:
        raise SpecError(
            f"{codec.name}: {codec.knob}={text} is out of range; {codec.name} takes {codec.knob_range()}"
        )
    if codec.integer_knob:
        if not value.is_integer():
            raise SpecError(f"{codec.name}: {codec.knob} takes whole numbers, not {text}")
        value = int(value)
    return Setting(codec=codec.name, knob=codec.knob, value=value, text=f"{codec.knob}={text}")


def _settings(codec: Codec, parts: list[tuple[str, list[Any]]]) -> list[Setting]:
    """Knob values (or targets) crossed with every combination of the options' values."""
    points: list[Setting] = []
    chosen: dict[str, list[str]] = {}
    for name, values in parts:
        option = codec.option(str(name))
        if option is None:
            points += [parse_value(codec, str(name), v) for v in values]
            continue
        for raw in values:
            value = option.normalise(raw)
            if value is None:
                raise SpecError(
                    f"{codec.name}: {option.name}={str(raw).strip()} is not allowed; {option.describe()}"
                )
            chosen.setdefault(option.name, [])
            if value not in chosen[option.name]:
                chosen[option.name].append(value)
    if not points:
        points = [parse_value(codec, codec.knob, v) for v in codec.default_values]
    names = [o.name for o in codec.options if o.name in chosen]
    out = []
    for combo in itertools.product(*(chosen[n] for n in names)):
        options = tuple(zip(names, combo, strict=True))
        suffix = "".join(f";{n}={v}" for n, v in options)
        out += [Setting(p.codec, p.knob, p.value, p.text + suffix, options) for p in points]
    return out


def _settings_for(codec_name: str, body: Any) -> list[Setting]:
    codec = get_codec(codec_name)
    reason = codec.unavailable()
    if reason:
        raise SpecError(
            f"codec '{codec.name}' is not available here: {reason}; available codecs:\n{describe_codecs()}"
        )
    if body is None or body == {} or body == "":
        return _settings(codec, [])
    if isinstance(body, str):
        return _settings(codec, _parse_inline_body(codec, body))
    if not isinstance(body, Mapping):
        raise SpecError(f"{codec.name}: expected a mapping like {{{codec.knob}: [values]}}, got {body!r}")
    parts: list[tuple[str, list[Any]]] = []
    for knob, values in body.items():
        items = values if isinstance(values, Sequence) and not isinstance(values, str) else [values]
        if isinstance(values, str):
            items = [v for v in values.split(",") if v.strip()]
        if not items:
            raise SpecError(f"{codec.name}: no values for '{knob}'; {_takes(codec)}")
        parts.append((str(knob), list(items)))
    return _settings(codec, parts)


def _parse_inline_body(codec: Codec, body: str) -> list[tuple[str, list[Any]]]:
    parts: list[tuple[str, list[Any]]] = []
    for part in body.split(";"):
        if not part.strip():
            continue
        knob, sep, values = part.partition("=")
        items = [v for v in values.split(",") if v.strip()]
        if not sep or not items:
            raise SpecError(f"{codec.name}: expected '{codec.knob}=v1,v2,...' but got '{part}'")
        parts.append((knob.strip(), items))
    return parts


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

    Raises :class:`SpecError` (with what is available) for an unknown codec, knob or option, or a value out of
    range. Two settings that encode the same way (the same value, the same options after defaults) are one.
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
    seen: set[tuple] = set()
    unique = []
    for s in settings:
        key = (s.codec, s.knob, s.value, tuple(get_codec(s.codec).resolve(s.option_values).items()))
        if key not in seen:
            seen.add(key)
            unique.append(s)
    if not unique:
        raise SpecError(f"the codec spec names no settings; available codecs:\n{describe_codecs()}")
    return unique


def default_spec() -> str:
    """Every registered codec of the default set at its default settings, as an inline spec."""
    return " ".join(
        f"{c.name}:{c.knob}={','.join(fmt(v) for v in c.default_values)}"
        for c in REGISTRY.values()
        if c.in_default_spec
    )
