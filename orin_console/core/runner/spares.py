"""Starting runner processes, and a spare one kept warm for fast loads and tier moves.

Starting a runner costs a Python start and the import of llama_cpp (about 0.1–0.15 s here),
which dominates a tier move of a model whose file is in the page cache. A :class:`SpareRunners`
keeps one process started with ``--preload`` (llama_cpp already imported, no model, about
40 MB), hands it to the next runner that starts, and starts a new spare in the background.

Every runner process is started by one long-lived thread of the console (:class:`_Forker`).
The runner asks the kernel to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG``), and for
the kernel the parent is the *thread* that forked it: a runner forked by a load-pool worker or a
short-lived thread would be killed when that thread ends. The forker thread lives as long as
the console's process.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from orin_console.core.runner.messages import RunnerError

CHILD_MODULE = "orin_console.core.runner.child"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])

Launched = tuple["subprocess.Popen[bytes]", socket.socket]
T = TypeVar("T")


class _Forker:
    """The one thread that forks every runner process (see the module's docstring).

    A daemon thread, started on first use and never ended: it dies with the process, which is
    exactly when its children should go. After a ``fork()`` of the console (the thread does
    not survive it) a new one is started.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = queue.SimpleQueue()

    def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the forker thread; return its result or raise its exception."""
        if threading.current_thread() is self._thread:
            return job()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._serve, args=(self._jobs,),
                                                name="runner-forker", daemon=True)
                self._thread.start()
            jobs = self._jobs
        outcome: list[Any] = []
        done = threading.Event()
        jobs.put((job, outcome, done))
        done.wait()
        ok, value = outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]]) -> None:
        while True:
            job, outcome, done = jobs.get()
            try:
                outcome[:] = [True, job()]
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome[:] = [False, exc]
            done.set()


_FORKER = _Forker()


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
    cmd = [*launcher, python, "-m", CHILD_MODULE, "--fd", str(fd), "--model-id", model_id,
           "--console-pid", str(os.getpid())]
    if preload:
        cmd.append("--preload")
    try:
        proc = _FORKER.run(lambda: subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
            close_fds=True,
            start_new_session=True,  # terminal signals (Ctrl-C) are the console's to handle
            env=env,
        ))
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
        self._fillers: list[threading.Thread] = []  # joined by close()
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

        filler = threading.Thread(target=start, name="runner-spare", daemon=True)
        with self._lock:
            self._fillers = [t for t in self._fillers if t.is_alive()] + [filler]
        filler.start()

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
        """End the spare process, if any, and join the threads starting one; none starts after."""
        with self._lock:
            self._closed = True
            launched, self._spare = self._spare, None
            fillers, self._fillers = self._fillers, []
        if launched is not None:
            _discard(launched)
        for filler in fillers:  # one that is starting a spare discards it: closed
            filler.join(10.0)


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
