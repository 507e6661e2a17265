"""Starting a runner: spawn its process, load the model, and stop a load on request.

:class:`RunnerLoading` is the half of :class:`~.client.Runner` that turns a stopped runner
into a loaded one (:meth:`~RunnerLoading.start`). The intricate part is stopping a start that
is under way: :meth:`~.client.Runner.kill`, :meth:`~.client.Runner.shutdown` or a cancel token
mark it stopped (``_start_stopped``) and end the process, and the start then raises
:class:`RunnerLoadStopped` instead of the death it sees; from the end of the load on, only
the start itself ends its process. ``_lock`` makes "loaded" and "stopped" exclusive.

The state is :class:`~.client.Runner`'s (declared on :class:`~.channel.RunnerChannel` and here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orin_console.core.cancel import CancelToken
from orin_console.core.runner.channel import ProgressCallback, RunnerChannel
from orin_console.core.runner.exits import is_notable
from orin_console.core.runner.limits import read_oom_score_adj
from orin_console.core.runner.messages import (
    LoadResult,
    RunnerDied,
    RunnerError,
    RunnerLoadError,
    RunnerLoadStopped,
    runner_text,
)
from orin_console.core.runner.tiers import RunnerConfig, child_oom_score_adj


class RunnerLoading(RunnerChannel):
    """:meth:`start` and the stopping of a start in progress (a mixin of :class:`~.client.Runner`)."""

    config: RunnerConfig
    load_result: LoadResult | None
    _starting: bool
    _start_stopped: str | None
    token_gap_timeout_s: float | None  # with first_token_timeout_s, the load's watchdog too
    first_token_timeout_s: float | None

    if TYPE_CHECKING:  # provided by :class:`~.client.Runner`, which owns the process
        def _spawn(self) -> None: ...  # the caller holds the lock
        def kill(self) -> int | None: ...
        def shutdown(self, timeout: float = 5.0) -> int | None: ...

    def start(
        self,
        progress: ProgressCallback | None = None,
        *,
        config: RunnerConfig | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
    ) -> LoadResult:
        """Start the runner process and load the model; block until loaded.

        May be called again after the process ended (death, shutdown): a new one starts.
        :meth:`kill` or :meth:`shutdown` from another thread while this waits stops the load:
        the process is ended and this raises :class:`RunnerLoadStopped` promptly.

        Args:
            progress: called with the load fraction (0..1) as llama.cpp reports it.
            config: replace :attr:`config` first (a tier move).
            timeout: seconds to wait for the load; on expiry the runner is killed.
            cancel: cancelling it stops the load like :meth:`kill` (already cancelled: no
                process starts).

        Returns:
            The runner's :class:`LoadResult`.

        Raises:
            RunnerLoadStopped: stopped by :meth:`kill`, :meth:`shutdown` or ``cancel``.
            RunnerLoadError: the model failed to load (the process is ended).
            RunnerDied: the process died while loading.
            RunnerError: already running or starting, could not start, or the load timed out.
        """
        with self._lock:
            if self._starting:
                raise RunnerError(self.model_id, f"runner for `{self.model_id}` is already starting")
            if not self._exited.is_set():
                raise RunnerError(self.model_id, f"runner for `{self.model_id}` is already running")
            if cancel is not None and cancel.cancelled:
                raise self._stopped_error(f"cancelled: {cancel.reason}")
            if config is not None:
                self.config = config
            self._spawn()
            self._starting = True
            self._start_stopped = None
        remove = None
        if cancel is not None:
            token = cancel
            remove = token.on_cancel(lambda: self._stop_start(f"cancelled: {token.reason}"))
        try:
            return self._load(progress, timeout)
        finally:
            if remove is not None:
                remove()
            with self._lock:
                self._starting = False

    def _load(self, progress: ProgressCallback | None, timeout: float | None) -> LoadResult:
        """The load half of :meth:`start`: the process is up, :attr:`_starting` is set."""
        wire = self.config.to_wire()
        wire["oom_score_adj"] = child_oom_score_adj(self.config.oom_score_adj, read_oom_score_adj())
        try:
            reply = self._call("load", {"config": wire, "model_id": self.model_id},
                               timeout=timeout, progress=progress, silence_s=self._load_silence_s())
        except RunnerDied:
            self._raise_if_stopped(self._end_start())
            raise
        except RunnerError:
            why = self._end_start()  # from here on, only this start ends its process
            self.kill()
            self._raise_if_stopped(why)
            raise
        if not reply.get("ok"):
            why = self._end_start()
            self.shutdown()
            self._raise_if_stopped(why)  # a shutdown asked during the load ends it with an error
            notable = [line for line in self._lines_since_start() if is_notable(line)]
            raise RunnerLoadError(
                self.model_id, f"`{self.model_id}` failed to load: {runner_text(reply.get('error'))}", notable[-4:]
            )
        result = LoadResult.from_wire(reply["result"])
        with self._lock:  # atomic with kill()'s look at _starting: loaded, or stopped
            stopped = self._start_stopped is not None
            if not stopped:
                self.load_result = result
                self._loaded = True
                self._starting = False
        if stopped:
            why = self._end_start()
            self.kill()  # a stop that raced with the end of the load
            self._raise_if_stopped(why)
        return result

    def _load_silence_s(self) -> float | None:
        """How long a loading runner may answer nothing (not even a ping) before it is killed:
        the larger of the watchdog's two limits (a load may import llama.cpp's libraries, which
        holds the runner's interpreter for a while on a slow board); None: never."""
        limits = [x for x in (self.first_token_timeout_s, self.token_gap_timeout_s) if x is not None]
        return max(limits) if limits else None

    def _stopped_error(self, why: str) -> RunnerLoadStopped:
        return RunnerLoadStopped(
            self.model_id, f"the load of `{self.model_id}` was stopped ({why}) before it finished; "
            "no runner process is left"
        )

    def _end_start(self) -> str | None:
        """Mark the start as over (a kill now is the start's own); why it was stopped, if so."""
        with self._lock:
            self._starting = False
            return self._start_stopped

    def _raise_if_stopped(self, why: str | None) -> None:
        if why is not None:
            raise self._stopped_error(why)

    def _stop_start(self, why: str) -> None:
        """Stop a start in progress (a ``cancel`` token's callback)."""
        with self._lock:
            if self._starting and self._start_stopped is None:
                self._start_stopped = why
        self.kill()
