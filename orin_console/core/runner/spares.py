"""Starting runner processes, and a spare one kept warm for fast loads and tier moves.

Starting a runner costs a Python start and the import of llama_cpp (about 0.1–0.15 s here),
which dominates a tier move of a model whose file is in the page cache. A :class:`SpareRunners`
keeps one process started with ``--preload`` (llama_cpp already imported, no model, about
40 MB), hands it to the next runner that starts, and starts a new spare in the background.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from orin_console.core.runner.messages import RunnerError

CHILD_MODULE = "orin_console.core.runner.child"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])

Launched = tuple["subprocess.Popen[bytes]", socket.socket]


def launch_child(python: str, launcher: Sequence[str], extra_env: Mapping[str, str],
                 model_id: str, *, preload: bool = False) -> Launched:
    """Start a runner process connected over a socketpair; return it and the console's end.

    Raises:
        RunnerError: the process could not be started.
    """
    parent_sock, child_sock = socket.socketpair()
    env = os.environ.copy()
    env.update(extra_env)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    fd = child_sock.fileno()
    cmd = [*launcher, python, "-m", CHILD_MODULE, "--fd", str(fd), "--model-id", model_id]
    if preload:
        cmd.append("--preload")
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
            close_fds=True,
            start_new_session=True,  # terminal signals (Ctrl-C) are the console's to handle
            env=env,
        )
    except OSError as exc:
        parent_sock.close()
        raise RunnerError(model_id, f"could not start a runner for `{model_id}`: {exc}") from exc
    finally:
        child_sock.close()
    return proc, parent_sock


class SpareRunners:
    """At most one warm, model-less runner process, replaced in the background when taken.

    Args:
        python: the interpreter runners use.
        launcher: the command prefix runners use.
        env: the extra environment runners get (a spare serves only runners with the same).
    """

    def __init__(self, python: str, launcher: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self._python = python
        self._launcher = list(launcher)
        self._env = dict(env or {})
        self._lock = threading.Lock()
        self._spare: Launched | None = None
        self._closed = False
        self._refill()

    def matches(self, python: str, launcher: Sequence[str], env: Mapping[str, str]) -> bool:
        """Whether a runner with these settings may use this pool's spare."""
        return python == self._python and list(launcher) == self._launcher and dict(env) == self._env

    def _refill(self) -> None:
        def start() -> None:
            try:
                launched = launch_child(self._python, self._launcher, self._env, "spare", preload=True)
            except RunnerError:
                return  # no spare this time; runners start their own
            with self._lock:
                if self._closed or self._spare is not None:
                    _discard(launched)
                    return
                self._spare = launched

        threading.Thread(target=start, name="runner-spare", daemon=True).start()

    def take(self) -> Launched | None:
        """The warm process (None when there is none ready); a new spare starts behind it."""
        with self._lock:
            launched, self._spare = self._spare, None
            closed = self._closed
        if launched is not None and launched[0].poll() is not None:
            _discard(launched)
            launched = None
        if not closed:
            self._refill()
        return launched

    def close(self) -> None:
        """End the spare process, if any; no new one is started."""
        with self._lock:
            self._closed = True
            launched, self._spare = self._spare, None
        if launched is not None:
            _discard(launched)


def _discard(launched: Launched) -> None:
    proc, sock = launched
    sock.close()  # the spare sees EOF and exits
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
