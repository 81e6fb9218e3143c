"""The codec registry: ``@register_codec("name")`` registers a :class:`~pipeline.codecs.base.Codec` subclass
(one instance of it) under the name users type and results carry, with the class's ``aliases``."""

from __future__ import annotations

from collections.abc import Callable

from model.registry import Registry

from .base import Codec


class SpecError(ValueError):
    """A codec spec that cannot be used: unknown codec or knob, a value out of range, a malformed entry."""


def _unknown(name: str, hint: str) -> str:
    return (
        f"unknown codec '{name}'"
        + (f" ({hint})" if hint else "")
        + f"; available codecs:\n{describe_codecs()}"
    )


REGISTRY: Registry[Codec] = Registry(
    "codec", error=SpecError, message=_unknown, normalise=lambda name: name.strip().lower()
)


def register_codec(name: str) -> Callable[[type[Codec]], type[Codec]]:
    """Class decorator: register a :class:`Codec` subclass under ``name`` (the name users type and results carry)."""

    def wrap(cls: type[Codec]) -> type[Codec]:
        if name in REGISTRY:
            raise ValueError(f"codec '{name}' is already registered")
        cls.name = name
        REGISTRY.add(name, cls(), aliases=cls.aliases)
        return cls

    return wrap


def list_codecs() -> list[str]:
    """Names of the registered codecs, in registration order."""
    return REGISTRY.names()


def describe_codecs() -> str:
    """One line per codec: its knob and range, its options, and why it is unavailable if it is."""
    lines = []
    for codec in REGISTRY.values():
        reason = codec.unavailable()
        note = f"  [unavailable: {reason}]" if reason else ""
        options = f"; {codec.describe_options()}" if codec.options else ""
        lines.append(f"  {codec.name:<7} {codec.knob_range()}{options}  {codec.library}{note}")
    return "\n".join(lines)


def get_codec(name: str) -> Codec:
    """The registered codec called ``name`` (or one of its aliases); unknown names get a suggestion."""
    return REGISTRY.get(name)
