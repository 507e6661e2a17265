"""What every route gets: the core the app was built on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orin_console.core import Core


def get_core(request: Request) -> Core:
    """The :class:`~orin_console.core.Core` given to :func:`~orin_console.api.app.create_app`."""
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]
"""Declare a route parameter ``core: CoreDep`` to receive the core."""
