"""``orin-console`` attached to a running server: finding it, checking the address, running.

- :func:`find_serving_core`: the core that already runs on this machine, from the one-core lock
  (``<state_dir>/console.lock``). The file only describes who took the lock last, so the lock
  must really be held (a non-blocking shared ``flock`` fails while a core holds it exclusively)
  and the holder must have written its API address.
- :func:`check_attach_url`: an ``http(s)://`` URL; off loopback a token is required (the server
  requires one there too), refused with the fix.
- :func:`run_attached`: the console over a
  :class:`~orin_console.tui.backend.remote.RemoteBackend`. It takes no lock (the server owns
  the machine's budgets) and closes nothing but its connection: quitting leaves the server and
  its models running.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from orin_console.core.errors import OrinError
from orin_console.core.instance import LOCK_NAME, read_holder
from orin_console.core.lifecycle import ConsoleTerminated
from orin_console.core.text import sanitize

if TYPE_CHECKING:
    from orin_console.cli.main import Context

__all__ = ["AttachError", "check_attach_url", "find_serving_core", "is_loopback", "run_attached"]


class AttachError(OrinError):
    """The console cannot attach (a bad URL, no token off loopback, the server does not answer)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def lock_is_held(state_dir: str | os.PathLike[str]) -> bool:
    """Whether a process holds the one-core lock of ``state_dir`` now."""
    path = Path(state_dir).expanduser() / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def find_serving_core(state_dir: str | os.PathLike[str]) -> str | None:
    """The API address of the core that runs on this machine (None: no core runs, or it
    serves no API). A core bound to every address (``0.0.0.0``, ``::``) is reached on loopback."""
    holder = read_holder(state_dir)
    if holder is None or not holder.address or not lock_is_held(state_dir):
        return None
    parts = urlsplit(holder.address)
    host = (parts.hostname or "").strip("[]")
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:
            loopback = "[::1]" if ":" in host else "127.0.0.1"
            return f"{parts.scheme}://{loopback}:{parts.port}" if parts.port else None
    try:
        return check_attach_url(holder.address, None, where="the lock file's address")
    except AttachError:
        return None  # an address elsewhere (it cannot be: a core serves from this machine)


def check_attach_url(url: str, token: str | None, *, where: str = "--attach") -> str:
    """``url`` without its trailing slash, checked.

    Raises:
        AttachError: not an ``http(s)://HOST[:PORT]`` URL, or off loopback without a token.
    """
    shown = sanitize(url)[:200]
    parts = urlsplit(url.strip())
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.query:
        raise AttachError(f"{where} {shown!r}: give the server's address as http://HOST:PORT "
                          "(e.g. http://127.0.0.1:8000)")
    if not token and not is_loopback(parts.hostname):
        raise AttachError(f"{where} {shown}: the server is not on this machine, so it needs its token: "
                          "give it with ORIN_TOKEN=... (or --token TOKEN, which shows in ps)")
    return url.strip().rstrip("/")


def run_attached(ctx: Context, url: str, token: str | None) -> int:
    """Open the console attached to ``url``; the exit status."""
    from orin_console.tui.app import build_app
    from orin_console.tui.backend.remote import RemoteBackend

    backend = RemoteBackend(url, token=token)
    try:
        try:
            backend.check()
        except Exception as exc:  # noqa: BLE001 - any failure here is "cannot attach", said plainly
            raise AttachError(f"cannot attach to {url}: {sanitize(str(exc))}") from None
        app = build_app(backend, settings=ctx.settings, log_path=ctx.settings.state_dir / "attached.log")
        app.handle_signals = True
        app.run()
    finally:
        backend.stop()
    if app.terminated_by is not None:
        ended = ConsoleTerminated(app.terminated_by)
        with contextlib.suppress(OSError):
            ctx.err.print(f"orin-console: {ended}; detached, {url} goes on", markup=False)
        return ended.exit_status
    return int(app.return_code or 0)
