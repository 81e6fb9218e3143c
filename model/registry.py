"""Model registry: a dictionary of named constructors plus the ``@register_model("name")`` decorator.

The registered name is what users type (``--model prfnet-tiny``) and what lands in result files and
checkpoints. Each entry may carry static metadata (patch size, input range, default config, ...) so
:func:`model_info` can answer without building the model.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = ["UnknownModelError", "create_model", "list_models", "model_info", "register_model"]

F = TypeVar("F", bound=Callable[..., nn.Module])


class UnknownModelError(ValueError):
    """A model name that is not registered."""


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: Callable[..., nn.Module]
    info: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, info: Mapping[str, Any] | None = None) -> Callable[[F], F]:
    """Register ``fn(**overrides) -> nn.Module`` as ``name``; ``info`` is what :func:`model_info` returns."""

    def decorator(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(name=name, fn=fn, info=dict(info or {}))
        return fn

    return decorator


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownModelError(f"unknown model {name!r}{hint} (registered: {known})") from None


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> dict[str, Any]:
    """Metadata of a registered model without building it: at least ``name`` and ``description``."""
    entry = _entry(name)
    doc = (entry.fn.__doc__ or "").strip().splitlines()
    info: dict[str, Any] = {"name": name, "description": doc[0] if doc else ""}
    info.update(copy.deepcopy(dict(entry.info)))
    return info


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``; keyword ``overrides`` replace its default constructor kwargs."""
    return _entry(name).fn(**overrides)
