"""A manager for tests and benchmarks: a catalog folder, a private state folder, quiet defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orin_console.core.manager import Manager
from orin_console.core.settings import load_settings


def make_manager(folder: Path, **kwargs: Any) -> Manager:
    """A :class:`Manager` on ``folder/models.toml`` with its state in ``folder/state``.

    Defaults suited to tests (each may be overridden): one decode thread per runner, no GPU
    probe (``gpu_offload=False``), no catalog watch. Settings come from defaults only, never
    from the developer's environment or config file.
    """
    settings = load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state")
    kwargs.setdefault("n_threads", 1)
    kwargs.setdefault("gpu_offload", False)
    kwargs.setdefault("watch_interval_s", 0)
    return Manager(settings, **kwargs)
