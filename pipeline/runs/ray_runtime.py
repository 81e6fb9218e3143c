"""Starting or joining Ray, the same way for every command.

``RAY_ADDRESS`` (or ``address=``) joins an existing cluster; otherwise a local Ray is started on this machine.
Workers of a local Ray inherit this process's environment, so the AWS settings reach tasks and actors unchanged.

Ray's own retry messages and remote tracebacks stay in Ray's logs (``/tmp/ray/session_latest/logs``) unless
``$PRFEVAL_VERBOSE`` is set (``--verbose``): a failed task or actor reaches the user as the one line
:func:`describe_failure` makes of it.
"""

from __future__ import annotations

import logging
import os
import re

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

VERBOSE_ENV = "PRFEVAL_VERBOSE"
ACTOR_INIT_DEATHS = 3  # consecutive actor construction failures before Ray Data fails the run


def verbose() -> bool:
    """Whether the user asked for Ray's own output and full traces (``--verbose`` or ``$PRFEVAL_VERBOSE``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None):
    """Initialise Ray once: join ``address``/``RAY_ADDRESS`` if given, else start a local instance."""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": verbose()}
    if address:
        ray.init(address=address, **kwargs)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    return ray


def data_context(progress: bool = True):
    """Ray Data's context with progress bars on (or off for quiet runs)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    if "RAY_DATA_MAX_CONSECUTIVE_ACTOR_INIT_DEATHS" not in os.environ:
        ctx.max_consecutive_actor_init_deaths = ACTOR_INIT_DEATHS
    if not verbose():  # Ray Data's failure tracebacks go to its log file, not the console
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    return ctx


_CAUSE_LINE = re.compile(r"^\s*(?:\x1b\[[0-9;]*m)?([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+?)\s*$")


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and what is behind it: Ray's wrappers (``.cause``), ``raise ... from`` and ``during handling``."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        for inner in (getattr(e, "cause", None), e.__cause__, e.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)
    return seen


def _ours(e: BaseException) -> bool:
    return not type(e).__module__.startswith("ray.")


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception behind ``error`` that is not one of Ray's own wrappers (``error`` when none)."""
    chain = _chain(error)
    return next((e for e in reversed(chain) if _ours(e)), chain[-1])


def describe_failure(error: BaseException) -> str:
    """One line naming why a Ray task or actor failed, e.g. ``CheckpointError: <uri>: ...``.

    Ray's errors (an actor that died in its constructor, a task that raised) wrap the user's exception or carry
    the remote traceback in their message; then its last ``Type: message`` line that is not Ray's own is the cause.
    """
    from pipeline.io.storage import redact

    chain = _chain(error)
    cause = root_cause(error)
    if not _ours(cause):
        for e in chain:
            found = [m.groups() for m in map(_CAUSE_LINE.match, str(e).splitlines()) if m]
            found = [(name, msg) for name, msg in found if not name.startswith("ray.")]
            if found:
                name, msg = found[-1]
                return redact(f"{name.rsplit('.', 1)[-1]}: {msg}")
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return redact(f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__)
