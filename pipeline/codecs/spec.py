"""The codec spec: which codecs `prfeval sweep` runs at which settings, inline or as a TOML/YAML file::

    jpeg:q=20,40,60,80 webp:q=30,60,90 jxl:d=1,3

    # sweep.toml                       # sweep.yaml
    [jpeg]                             jpeg: {q: [20, 40, 60, 80]}
    q = [20, 40, 60, 80]               jxl: {d: [1.0, 3.0]}

A codec named without settings (``jpeg``) runs its default settings. Values are checked against the codec's
metadata (its knob, the knob's aliases and range). Mistakes raise :class:`SpecError`, which says what is
available.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.io import storage

from .base import Codec, fmt
from .registry import REGISTRY, SpecError, describe_codecs, get_codec


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


def default_spec() -> str:
    """Every registered codec at its default settings, as an inline spec."""
    return " ".join(
        f"{c.name}:{c.knob}={','.join(fmt(v) for v in c.default_values)}" for c in REGISTRY.values()
    )
