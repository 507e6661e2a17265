"""The runner's public value types and errors, with their wire (JSON) forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize
from orin_console.core.units import MB, format_size

MAX_PROMPT_BYTES = 8 * MB
"""Most UTF-8 bytes of request text (prompt or chat messages, and stop strings, together).

Far beyond any context a model here holds (128k tokens are about 0.5 MB of text), and small
enough that the request's frame stays under the channel's 64 MB limit even if JSON escapes
every byte (6 bytes each: ``\\u0001``), so no text can ever break a runner's channel.
"""

FINISH_REASONS = ("stop", "length", "cancelled")
"""``stop``: end of text or a stop string; ``length``: ``max_tokens`` reached;
``cancelled``: :meth:`Runner.cancel` (or an abandoned stream) stopped it."""


class RunnerError(OrinError):
    """A runner could not do what was asked. The message names the model and the cause.

    Attributes:
        model_id: the model the runner hosts.
        stderr_tail: the runner's last relevant output lines, when they help.
    """

    def __init__(self, model_id: str, message: str, stderr_tail: Sequence[str] = ()) -> None:
        self.model_id = model_id
        self.stderr_tail = list(stderr_tail)
        super().__init__(message)


class RunnerInputError(OrinError, ValueError):
    """A request's text cannot be sent to a runner: it cannot be encoded, or it is too big.

    Raised when the :class:`GenerateRequest` is made, so before anything reaches a runner
    (and again by :meth:`Runner.generate` for a request changed after it was made). It is the
    caller's input that is wrong, not the runner: the runner stays usable. A ``ValueError``
    too, like the request's other checks.
    """


class RunnerBusy(RunnerError):
    """The runner is already generating; one generation at a time (the manager queues)."""


class RunnerLoadError(RunnerError):
    """The model failed to load inside the runner (missing, unreadable or rejected file).

    The runner process is ended; :meth:`Runner.start` may be called again.
    """


class RunnerLoadStopped(RunnerError):
    """:meth:`Runner.start` was stopped before the load finished.

    By :meth:`Runner.kill` or :meth:`Runner.shutdown` from another thread, or by the
    ``cancel`` token given to :meth:`Runner.start`. The runner process is ended.
    """


class RunnerDied(RunnerError):
    """The runner process ended without being asked to.

    Attributes:
        reason: a human reason, e.g. ``"killed (SIGKILL) — possibly the kernel's OOM
            killer: check `dmesg`"``.
        returncode: the process's exit status (negative: the signal number).
        signal_name: ``"SIGKILL"`` and the like, or None for a plain exit.
    """

    def __init__(
        self,
        model_id: str,
        reason: str,
        returncode: int | None,
        signal_name: str | None,
        stderr_tail: Sequence[str] = (),
    ) -> None:
        self.reason = reason
        self.returncode = returncode
        self.signal_name = signal_name
        message = f"runner for `{model_id}` {reason}"
        if stderr_tail:
            message += "; last output: " + " | ".join(stderr_tail)
        super().__init__(model_id, message, stderr_tail)


@dataclass(frozen=True)
class GenerateRequest:
    """One generation: a completion from ``prompt`` or a chat from ``messages``.

    Chat prompts are rendered with the model's own chat template from its GGUF (by
    llama-cpp-python's sandboxed Jinja environment).

    Attributes:
        prompt: raw prompt text (exactly one of ``prompt`` and ``messages``).
        messages: chat messages, each ``{"role": ..., "content": ...}``.
        max_tokens: most tokens to generate.
        temperature: 0 is greedy (deterministic).
        top_p: nucleus sampling mass, in (0, 1].
        stop: strings that end the generation (not included in the text).
        seed: sampling seed; None leaves the runner's.
        stream: True yields a chunk per token; False yields one chunk with the whole text.

    Raises:
        RunnerInputError: a text cannot be encoded, or the texts exceed
            :data:`MAX_PROMPT_BYTES` (see :func:`check_request_text`).
        ValueError: another field is out of range.
    """

    prompt: str | None = None
    messages: Sequence[Mapping[str, str]] | None = None
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    stop: Sequence[str] = ()
    seed: int | None = None
    stream: bool = True

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        if self.messages is not None:
            checked = []
            for i, msg in enumerate(self.messages):
                role, content = msg.get("role"), msg.get("content")
                if not isinstance(role, str) or not isinstance(content, str):
                    raise ValueError(f"messages[{i}] needs string 'role' and 'content'")
                checked.append({"role": role, "content": content})
            if not checked:
                raise ValueError("messages is empty")
            object.__setattr__(self, "messages", tuple(checked))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        check_request_text(self.prompt, self.messages, self.stop)
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON form sent to the runner."""
        wire = asdict(self)
        wire["messages"] = list(self.messages) if self.messages is not None else None
        wire["stop"] = list(self.stop)
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> GenerateRequest:
        """Rebuild a request from :meth:`to_wire`'s output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in wire.items() if k in names})


def _utf8_size(text: str, where: str) -> int:
    """Return the UTF-8 size of ``text``; raise :class:`RunnerInputError` if it has none."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise RunnerInputError(
            f"{where} holds a character that cannot be encoded as UTF-8 (a lone surrogate, "
            f"U+{ord(bad):04X}) at position {exc.start}: remove it, or decode the input with "
            f"errors='replace' so that it becomes U+FFFD"
        ) from None


def check_request_text(
    prompt: str | None, messages: Sequence[Mapping[str, str]] | None, stop: Sequence[str]
) -> int:
    """Check that a request's text can be sent to a runner; return its size in UTF-8 bytes.

    Args:
        prompt: the raw prompt, or None.
        messages: the chat messages (string ``role`` and ``content``), or None.
        stop: the stop strings.

    Returns:
        The UTF-8 bytes of prompt, messages and stop strings together.

    Raises:
        RunnerInputError: a text holds a character UTF-8 cannot encode (its place is named),
            or the texts together exceed :data:`MAX_PROMPT_BYTES`.
    """
    texts: list[tuple[str, str]] = []
    if prompt is not None:
        if not isinstance(prompt, str):
            raise RunnerInputError(f"the prompt must be a string, got {type(prompt).__name__}")
        texts.append((prompt, "the prompt"))
    for i, msg in enumerate(messages or ()):
        texts.append((msg["role"], f"messages[{i}].role"))
        texts.append((msg["content"], f"messages[{i}].content"))
    for i, text in enumerate(stop):
        if not isinstance(text, str):
            raise RunnerInputError(f"stop[{i}] must be a string, got {type(text).__name__}")
        texts.append((text, f"stop[{i}]"))
    # UTF-8 takes at least a byte per character: a text too long in characters is refused
    # before it is encoded (a 1 GB prompt costs nothing to refuse).
    if sum(len(text) for text, _ in texts) > MAX_PROMPT_BYTES:
        _refuse_size(sum(len(text) for text, _ in texts), exact=False)
    total = sum(_utf8_size(text, where) for text, where in texts)
    if total > MAX_PROMPT_BYTES:
        _refuse_size(total, exact=True)
    return total


def _refuse_size(size: int, *, exact: bool) -> None:
    shown = format_size(size, unit="MB")
    limit = format_size(MAX_PROMPT_BYTES, unit="MB")
    raise RunnerInputError(
        f"the request's text is too big for a runner: {'' if exact else 'at least '}{shown} given "
        f"(prompt, messages and stop strings together), the limit is {limit}; send a shorter prompt "
        f"(a model's context holds far less)"
    )


def runner_text(value: Any) -> str:
    """Text a runner sent (an error, a note), made safe for a terminal: one line, no controls.

    The runner quotes llama.cpp, which quotes the model file (a crafted GGUF's metadata, its
    file name): never trusted to be printable.
    """
    return sanitize(value if isinstance(value, str) else str(value))


@dataclass(frozen=True)
class GenerationStats:
    """Measured by the runner for one generation.

    Attributes:
        tokens: tokens generated (the end-of-generation token not counted).
        prompt_tokens: tokens in the evaluated prompt.
        ttft_s: request received → first token sampled (prompt evaluation included).
        tok_per_s: decode speed after the first token; None with fewer than two tokens.
        total_s: request received → generation ended.
        finish_reason: one of :data:`FINISH_REASONS`.
    """

    tokens: int
    prompt_tokens: int
    ttft_s: float | None
    tok_per_s: float | None
    total_s: float
    finish_reason: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> GenerationStats:
        """Rebuild stats from their JSON form."""
        return cls(**{f.name: wire[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Chunk:
    """One piece of a generation's output.

    Attributes:
        text: the text piece (streaming), or the whole text in the final chunk of a
            non-streamed request; empty in the final chunk of a streamed one.
        done: True for the last chunk, which also carries ``stats``.
        stats: the generation's stats (final chunk only).
    """

    text: str
    done: bool = False
    stats: GenerationStats | None = None


@dataclass(frozen=True)
class RunnerHealth:
    """A runner's answer to :meth:`Runner.ping` (served even mid-generation).

    Attributes:
        rtt_s: round trip of the ping, in seconds.
        pid: the runner's process id.
        state: ``"idle"``, ``"loading"`` or ``"generating"``.
        tokens: tokens generated so far by the generation in progress (0 when idle).
    """

    rtt_s: float
    pid: int
    state: str
    tokens: int


@dataclass(frozen=True)
class LoadResult:
    """What a runner reports after loading its model.

    Attributes:
        pid: the runner's process id.
        load_seconds: time spent inside llama.cpp's load (weights and context).
        gpu_offload_supported: whether this llama.cpp build can offload to a GPU.
        gpu_layers: layers requested on the GPU after checking support (-1: all).
        n_layers: the model's layer count.
        mlock_requested: whether the tier asked for locked weights.
        pinned: True only when the weights are really locked in memory.
        pin_problem: why not pinned although requested, with the fix; None otherwise.
        locked_bytes: ``VmLck`` of the runner after the load.
        model_bytes: size of the model's tensors.
        memlock_limit: the runner's ``RLIMIT_MEMLOCK`` soft limit in bytes (None: unlimited).
        oom_score_adj: the runner's ``oom_score_adj`` as read back.
        n_ctx: context size of the runner's context.
        n_ctx_train: context length the model was trained with.
        n_threads: decode threads.
        has_chat_template: whether the GGUF carries ``tokenizer.chat_template``.
        notes: plain sentences for the operator (CPU only, oom_score_adj refused, ...).
    """

    pid: int
    load_seconds: float
    gpu_offload_supported: bool
    gpu_layers: int
    n_layers: int
    mlock_requested: bool
    pinned: bool
    pin_problem: str | None
    locked_bytes: int
    model_bytes: int
    memlock_limit: int | None
    oom_score_adj: int | None
    n_ctx: int
    n_ctx_train: int
    n_threads: int
    has_chat_template: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> LoadResult:
        """Rebuild a load result from its JSON form."""
        values = {f.name: wire[f.name] for f in fields(cls) if f.name in wire}
        values["notes"] = tuple(runner_text(note) for note in values.get("notes", ()))
        if values.get("pin_problem") is not None:
            values["pin_problem"] = runner_text(values["pin_problem"])
        return cls(**values)
