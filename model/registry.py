"""Registries: names users type, mapped to what they select, with aliases and a "did you mean …" hint.

:class:`Registry` is the one implementation behind every name lookup of prfeval (model variants, codecs, metrics,
sample photos, commands, ...): a table of name -> object in registration order, optional aliases, a ``register``
decorator that refuses a name already taken, and :meth:`Registry.get`, which raises the registry's own error
class with the closest registered names. :func:`did_you_mean` is the hint on its own, for lookups in plain lists.

The model variants live in one such registry: ``@register_model("name")`` registers a constructor. The registered
name is what users type (``--model prfnet-tiny``) and what lands in result files and checkpoints. Each entry may
carry static metadata (patch size, input range, default config, ...) so :func:`model_info` can answer without
building the model, and may name the checkpoint the package ships for it (a file under ``model/weights/``).

This module imports neither torch nor the model, so anything may import it cheaply.
"""

from __future__ import annotations

import copy
import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "Registry",
    "UnknownModelError",
    "create_model",
    "did_you_mean",
    "list_models",
    "model_info",
    "register_model",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def did_you_mean(
    name: str,
    choices: Iterable[str],
    *,
    n: int = 1,
    cutoff: float = 0.6,
    canonical: Mapping[str, str] | None = None,
) -> str:
    """``"did you mean 'x'?"`` (or ``'x' or 'y'`` for ``n`` > 1) for the choices closest to ``name``; ``""`` if none.

    ``canonical`` maps aliases among ``choices`` to the name to suggest instead.
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    if canonical:
        close = list(dict.fromkeys(canonical.get(c, c) for c in close))
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    """Named objects (classes, instances, factories, records) in registration order, with aliases.

    ``kind`` names what is registered (``"metric"``) in the default error message; ``error`` is the exception
    class :meth:`get` raises; ``message(name, hint)`` builds that exception's message instead of the default
    ``unknown <kind> '<name>'; did you mean …? (known: …)``. ``normalise`` is applied to looked-up names (e.g.
    ``str.lower``); ``suggestions`` and ``cutoff`` tune the hint.
    """

    def __init__(
        self,
        kind: str,
        *,
        error: type[Exception] = KeyError,
        message: Callable[[str, str], str] | None = None,
        normalise: Callable[[str], str] | None = None,
        suggestions: int = 1,
        cutoff: float = 0.6,
    ) -> None:
        self.kind = kind
        self.error = error
        self._message = message
        self._normalise = normalise
        self._suggestions = suggestions
        self._cutoff = cutoff
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    # --- registering ------------------------------------------------------------------------------------------

    def add(self, name: str, obj: T, *, aliases: Iterable[str] = ()) -> T:
        """Register ``obj`` as ``name`` (and ``aliases``); a name taken by something else raises ``ValueError``.

        Registering an equal object under the same name again (a module imported twice) changes nothing.
        """
        aliases = tuple(aliases)
        if name in self._aliases or (name in self._items and self._items[name] != obj):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        for alias in aliases:
            if alias in self._items or self._aliases.get(alias, name) != name:
                raise ValueError(f"{self.kind} {alias!r} is already registered")
        self._items[name] = obj
        self._aliases.update(dict.fromkeys(aliases, name))
        return obj

    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@registry.register("name")`` registers what it decorates."""

        def decorator(obj: T) -> T:
            return self.add(name, obj, aliases=aliases)

        return decorator

    # --- looking up -------------------------------------------------------------------------------------------

    def resolve(self, name: str) -> str | None:
        """The registered name ``name`` stands for (itself or the target of an alias), or None."""
        key = self._normalise(name) if self._normalise else name
        key = self._aliases.get(key, key)
        return key if key in self._items else None

    def get(self, name: str) -> T:
        """The object registered as ``name`` or one of its aliases; otherwise the registry's error, with a hint."""
        key = self.resolve(name)
        if key is None:
            raise self.error(self.unknown(name))
        return self._items[key]

    def hint(self, name: str) -> str:
        """``"did you mean 'x'?"`` for an unknown ``name`` (aliases count, the name they stand for is shown)."""
        key = self._normalise(name) if self._normalise else name
        return did_you_mean(
            key,
            [*self._items, *self._aliases],
            n=self._suggestions,
            cutoff=self._cutoff,
            canonical=self._aliases,
        )

    def unknown(self, name: str) -> str:
        """The message of the error :meth:`get` raises for ``name``."""
        hint = self.hint(name)
        if self._message is not None:
            return self._message(name, hint)
        return (
            f"unknown {self.kind} {name!r}" + (f"; {hint}" if hint else "") + f" (known: {', '.join(self)})"
        )

    def names(self) -> list[str]:
        """Registered names (no aliases), in registration order."""
        return list(self._items)

    # --- the read-only mapping view (registered names only) ---------------------------------------------------

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self):
        return self._items.keys()

    def values(self):
        return self._items.values()

    def items(self):
        return self._items.items()

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register stand-ins into a copy)."""
        other: Registry[T] = Registry(
            self.kind,
            error=self.error,
            message=self._message,
            normalise=self._normalise,
            suggestions=self._suggestions,
            cutoff=self._cutoff,
        )
        other._items = dict(self._items)
        other._aliases = dict(self._aliases)
        return other

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


# --- the model variants ---------------------------------------------------------------------------------------


class UnknownModelError(ValueError):
    """A model name that is not registered."""


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: Callable[..., Any]
    info: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None  # the checkpoint shipped for it, a file name under model/weights/


def _unknown_model(name: str, hint: str) -> str:
    known = ", ".join(sorted(_REGISTRY)) or "none"
    return f"unknown model {name!r}" + (f"; {hint}" if hint else "") + f" (registered: {known})"


_REGISTRY: Registry[_Entry] = Registry(
    "model", error=UnknownModelError, message=_unknown_model, suggestions=3, cutoff=0.5
)
_BUILTIN_VARIANTS = "model.prfnet"  # the module whose import registers the shipped variants


def register_model(
    name: str, *, info: Mapping[str, Any] | None = None, weights: str | None = None
) -> Callable[[F], F]:
    """Register ``fn(**overrides) -> nn.Module`` as ``name``.

    ``info`` is what :func:`model_info` returns; ``weights`` names the checkpoint the package ships for this
    variant (a file under ``model/weights/``), if any.
    """

    def decorator(fn: F) -> F:
        _REGISTRY.add(name, _Entry(name=name, fn=fn, info=dict(info or {}), weights=weights))
        return fn

    return decorator


def _entry(name: str) -> _Entry:
    importlib.import_module(_BUILTIN_VARIANTS)  # registers the shipped variants on first use
    return _REGISTRY.get(name)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    importlib.import_module(_BUILTIN_VARIANTS)
    return sorted(_REGISTRY)


def model_info(name: str) -> dict[str, Any]:
    """Metadata of a registered model without building it: at least ``name`` and ``description``.

    ``weights`` is the file name of the checkpoint the package ships for it, when it ships one.
    """
    entry = _entry(name)
    doc = (entry.fn.__doc__ or "").strip().splitlines()
    info: dict[str, Any] = {"name": name, "description": doc[0] if doc else ""}
    info.update(copy.deepcopy(dict(entry.info)))
    if entry.weights:
        info["weights"] = entry.weights
    return info


def packaged_weights(name: str) -> str | None:
    """The file name (under ``model/weights/``) of the checkpoint shipped for model ``name``, or None."""
    return _entry(name).weights


def create_model(name: str, **overrides: Any) -> Any:
    """Build the registered model ``name``; keyword ``overrides`` replace its default constructor kwargs."""
    return _entry(name).fn(**overrides)
