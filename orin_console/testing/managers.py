"""A core and a manager for tests and benchmarks: a catalog folder, a private state folder,
quiet defaults. Both are built by :func:`~orin_console.core.create_core`, as every front end's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orin_console.core import Core, create_core
from orin_console.core.manager.manager import Manager
from orin_console.core.settings import Settings, load_settings


def settings_for(folder: Path, **overrides: Any) -> Settings:
    """Settings on ``folder/models.toml`` with state in ``folder/state``, defaults otherwise
    (never the developer's environment or config file)."""
    return load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state", **overrides)


def make_core(folder: Path, *, settings: Settings | None = None, **kwargs: Any) -> Core:
    """A :class:`Core` (not started) with test defaults: one decode thread per runner, no GPU
    probe (``gpu_offload=False``), no catalog watch, no telemetry sampler, no optimiser
    thread. Each may be overridden."""
    kwargs.setdefault("n_threads", 1)
    kwargs.setdefault("gpu_offload", False)
    kwargs.setdefault("watch_interval_s", 0)
    kwargs.setdefault("telemetry", False)
    kwargs.setdefault("optimiser", False)
    return create_core(settings or settings_for(folder), **kwargs)


def make_manager(folder: Path, **kwargs: Any) -> Manager:
    """The manager of a :func:`make_core` core. ``with make_manager(...)`` starts and closes
    the manager itself (the test owns it)."""
    return make_core(folder, **kwargs).manager
