"""What every route gets: the core the app was built on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Request

from orin_console.core import Core


def get_core(request: Request) -> Core:
    """The :class:`~orin_console.core.Core` given to :func:`~orin_console.api.app.create_app`."""
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]
"""Declare a route parameter ``core: CoreDep`` to receive the core."""

T = TypeVar("T")
_STATE_LOCK = threading.Lock()


def app_state(app: FastAPI, name: str, make: Callable[[], T]) -> T:
    """The per-app object stored as ``app.state.<name>``, made by ``make`` on first use
    (thread-safe: routes run on the loop and in worker threads)."""
    with _STATE_LOCK:
        value: T | None = getattr(app.state, name, None)
        if value is None:
            value = make()
            setattr(app.state, name, value)
        return value
