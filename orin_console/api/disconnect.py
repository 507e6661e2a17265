"""A request's answer raced against its client going away (the generation routes share it).

Starlette cancels a streamed response's generator when the client leaves, but a route that
awaits a whole answer (a non-streamed generation, the first piece of an OpenAI stream) would
keep its runner generating for nobody: :func:`unless_gone` watches the connection meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_gone(request: Request, work: Awaitable[T], cancel: Callable[[], object] | None = None) -> T:
    """Await ``work``; if the client goes first, ``cancel()`` the generation (the runner stops
    within one token and its queue place is freed) and cancel ``work``, wait for it to end, and
    raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        if cancel is not None:
            cancel()
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    if cancel is not None:
        cancel()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise ClientGone
