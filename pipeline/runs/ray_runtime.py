"""Starting or joining Ray, the same way for every command.

``RAY_ADDRESS`` (or ``address=``) joins an existing cluster; otherwise a local Ray is started on this machine.
Workers of a local Ray inherit this process's environment, so the AWS settings reach tasks and actors unchanged.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None):
    """Initialise Ray once: join ``address``/``RAY_ADDRESS`` if given, else start a local instance."""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
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
    return ctx
