"""The chat pane: a prompt input with history, the streamed answer pinned to the bottom, and
per answer one footer line (model, why, runner-up, TTFT, tok/s).

One prompt, one answer: each prompt goes through ``engine.stream_quick(..., source="tui")``,
not ``stream_chat`` with the conversation so far. In ``auto`` mode every prompt is routed on
its own (a code question goes to the code model, the next chat line to the chat model), so a
running conversation would be fed to models that never saw its start, would have to fit the
smallest context of them, and would make every answer's TTFT grow on a Jetson. The engine
still puts a single prompt through the model's own chat template when it has one.

Model output is data. Each piece goes through :func:`~orin_console.core.text.sanitize`
(newlines and tabs kept) before it reaches the :class:`~textual.widgets.Markdown` widget, so
ANSI escapes, C1 controls and bidi overrides become U+FFFD; Markdown is not Rich markup, so a
model writing ``[bold]`` shows those characters; links are not opened (``open_links=False``).
The prompt, the footer and every error are :class:`~rich.text.Text`, never markup.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Literal

from markdown_it import MarkdownIt
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Markdown, Static

from orin_console.core.engine.selection import SelectionError
from orin_console.core.engine.types import ParameterError, Result
from orin_console.core.errors import OrinError
from orin_console.core.manager.types import ModelBusy
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.runner.messages import RunnerError
from orin_console.core.text import StreamSanitizer, sanitize

__all__ = ["MODES", "ChatPane", "describe_error", "footer_line"]

Mode = Literal["manual", "auto", "hybrid"]
MODES: tuple[Mode, ...] = ("auto", "hybrid", "manual")
"""The selection modes in the order ``m`` cycles through them."""

HISTORY_LIMIT = 200
"""Prompts kept for up/down."""


def _layout_if_resized(widget: Widget) -> None:
    """Ask for a layout only when ``widget``'s content height changed (after an update made
    with ``layout=False``): the answer's tail is rewritten on every burst of tokens, and each
    layout reflows and repaints the whole screen (issue 9's event-loop stall)."""
    width, height = widget.content_size
    if not width or widget.get_content_height(widget.content_size, widget.content_size, width) != height:
        widget.refresh(layout=True)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "TTFT –"
    return f"TTFT {seconds * 1000:.0f} ms" if seconds < 10 else f"TTFT {seconds:.1f} s"


def footer_line(result: Result) -> str:
    """One line per answer: model (mode: task, why) · runner-up · load · TTFT · tok/s · tokens · end.

    Plain text (every part sanitised), to be shown as :class:`~rich.text.Text`.
    """
    sel = result.selection
    why = sel.candidates[0].why if sel.candidates else ""
    parts = [f"{result.model_id} ({sel.mode}: {result.task}{', ' + why if why else ''})"]
    parts.append(f"runner-up {sel.runner_up}" if sel.runner_up else "no runner-up")
    if result.load_s is not None:
        parts.append(f"loaded into {result.loaded_tier} in {result.load_s:.1f} s")
    parts.append(_ms(result.ttft_s))
    parts.append(f"{result.tok_per_s:.1f} tok/s" if result.tok_per_s else "– tok/s")
    parts.append(f"{result.tokens} tokens")
    parts.append(result.finish_reason)
    parts += list(result.notes)
    return sanitize(" · ".join(parts))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(kind, reason)`` for an error of a generation, in the operator's words.

    ``kind`` is ``busy``, ``refused`` (admission, with its itemised reason), ``failed`` (the
    runner died or failed), ``no model`` (selection), ``invalid`` (a parameter or the prompt)
    or ``error``. The reason is sanitised, one line per line of the original.
    """
    if isinstance(exc, ModelBusy):
        kind = "busy"
    elif isinstance(exc, AdmissionRefused):
        return "refused", sanitize(exc.decision.explain(), multiline=True)
    elif isinstance(exc, RunnerError):
        kind = "failed"
    elif isinstance(exc, SelectionError):
        kind = "no model"
    elif isinstance(exc, (ParameterError, ValueError)):
        kind = "invalid"
    else:
        kind = "error"
    reason = str(exc) if isinstance(exc, OrinError) else f"{type(exc).__name__}: {exc}"
    return kind, sanitize(reason, multiline=True)


class ChatPane(Widget, can_focus=False):
    """Ask the models: an input with history, the answer streamed as Markdown, its figures.

    The generation runs in a thread worker (group ``chat``); pieces reach the widget only as
    posted messages, and a burst of tokens is coalesced into one write (the worker posts one
    :class:`TokensArrived` until the UI has drained the buffer).

    Each top-level Markdown block (a paragraph, a list, a code fence) is rendered once, when
    the next one begins, as its own :class:`~textual.widgets.Markdown`; the block still being
    written shows as plain text below them. Appending to one growing Markdown widget (or its
    ``MarkdownStream``) rebuilds the last block's widgets per burst: a list of a few items
    took 40–80 ms of the event loop each time on a busy 2-core machine, the console's worst
    stall while a model answered.

    | Key | Action | Description |
    | :- | :- | :- |
    | enter | (input) | Send the prompt. |
    | up / down | `history` | Previous / next prompt (in the input). |
    | escape | `stop_or_leave` | Stop the answer within one token; when idle, leave the input. |
    | ctrl+n | `cycle_preferred` | Next preferred model (manual: the model; hybrid: preferred). |

    Args:
        engine: the back end's chat engine (:class:`~orin_console.tui.backend.ChatEngine`:
            ``stream_quick`` and ``catalog_ids``), or the core's engine itself.
        params: generation parameters for every answer (``max_tokens``, ``temperature``...).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_or_leave", "Stop", id="chat.stop"),
        Binding("up", "history(-1)", "Previous prompt", show=False, id="chat.history_previous"),
        Binding("down", "history(1)", "Next prompt", show=False, id="chat.history_next"),
        Binding("ctrl+n", "cycle_preferred", "Next model", id="chat.preferred"),
    ]

    DEFAULT_CSS = """
    ChatPane {
        height: 1fr;
        layout: vertical;
        & > #chat-status { height: 1; color: $text-muted; background: $panel; padding: 0 1; }
        & > #chat-log { height: 1fr; padding: 0 1; }
        & > #chat-input { height: 1; margin: 0 1; }
        .chat-prompt { color: $accent; text-style: bold; margin-top: 1; }
        .chat-answer { margin: 0; padding: 0; background: transparent; }
        .chat-answer-tail { margin: 0; padding: 0; }
        .chat-meta { color: $text-muted; }
        .chat-error { color: $error; }
    }
    """

    mode: reactive[str] = reactive("auto")
    """Selection mode: ``auto`` (the engine picks), ``hybrid`` (``preferred`` when it fits) or
    ``manual`` (``preferred`` answers)."""

    preferred: reactive[str | None] = reactive(None)
    """The operator's model: the model in ``manual``, the preferred one in ``hybrid``."""

    generating: reactive[bool] = reactive(False)
    """Whether an answer is being generated (escape stops it)."""

    class AnswerFinished(Message):
        """An answer ended (finished, hit its length, or was stopped: see ``finish_reason``)."""

        def __init__(self, pane: ChatPane, result: Result) -> None:
            super().__init__()
            self.pane = pane
            self.result = result

        @property
        def control(self) -> ChatPane:
            """The chat pane."""
            return self.pane

    class AnswerFailed(Message):
        """An answer could not be given: ``kind`` (busy, refused, failed...) and ``reason``."""

        def __init__(self, pane: ChatPane, kind: str, reason: str) -> None:
            super().__init__()
            self.pane = pane
            self.kind = kind
            self.reason = reason

        @property
        def control(self) -> ChatPane:
            """The chat pane."""
            return self.pane

    class TokensArrived(Message, bubble=False):
        """Internal: pieces are waiting in the pane's buffer (one message per burst)."""

    class GenerationStarted(Message, bubble=False):
        """Internal: the model is chosen (``note``: what happens before the first token)."""

        def __init__(self, note: str) -> None:
            super().__init__()
            self.note = note

    class GenerationEnded(Message, bubble=False):
        """Internal: the worker is done, with a result or an error."""

        def __init__(self, result: Result | None, error: BaseException | None) -> None:
            super().__init__()
            self.result = result
            self.error = error

    def __init__(self, engine: Any, *, params: Any = None, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._engine = engine
        self._params = params
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._flush_posted = False
        self._stream: Any = None
        self._stop_requested = False
        self._history: list[str] = []
        self._history_at = 0
        self._draft = ""
        self._tail: Static | None = None
        self._meta: Static | None = None
        self._text = ""
        self._clean = StreamSanitizer()  # an emoji's ZWJ may end one burst
        self._rendered = 0
        self._parser = MarkdownIt("gfm-like")
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Static(id="chat-status")
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="Ask a model (enter sends, ↑↓ history, escape stops)",
                    id="chat-input", compact=True)

    def on_mount(self) -> None:
        self.query_one("#chat-log", VerticalScroll).anchor()
        self._ready = True
        self._show_status()

    # -- public ---------------------------------------------------------------------------

    def cycle_mode(self) -> str:
        """Switch to the next selection mode (auto → hybrid → manual → auto) and return it."""
        at = MODES.index(self.mode) if self.mode in MODES else -1
        self.mode = MODES[(at + 1) % len(MODES)]
        return self.mode

    def stop(self) -> bool:
        """Stop the answer in progress within one token (from the UI thread).

        Returns:
            Whether there was an answer to stop.
        """
        with self._lock:
            if not self.generating:
                return False
            self._stop_requested = True
            stream = self._stream
        if stream is not None:
            stream.cancel()  # thread-safe: the runner stops at its next token
        return True

    def focus_input(self) -> None:
        """Put the keyboard in the prompt input, at once: ``Widget.focus()`` defers the change, so
        the keys typed right after ``/`` (a fast typist, a paste) would still reach the old
        focus and run its bindings (``a`` would open the add dialog)."""
        self.screen.set_focus(self.query_one("#chat-input", Input))

    @property
    def history(self) -> tuple[str, ...]:
        """The prompts sent, oldest first."""
        return tuple(self._history)

    # -- reactives ------------------------------------------------------------------------

    def validate_mode(self, mode: str) -> str:
        return mode if mode in MODES else "auto"

    def watch_mode(self) -> None:
        self._show_status()

    def watch_preferred(self) -> None:
        self._show_status()

    def watch_generating(self) -> None:
        self._show_status()

    def _show_status(self) -> None:
        if not self._ready:
            return
        model = sanitize(self.preferred) if self.preferred else "–"
        label = {"manual": "model", "hybrid": "preferred", "auto": "preferred"}[self.mode]
        state = "generating (escape stops)" if self.generating else "idle"
        self.query_one("#chat-status", Static).update(Text(f"mode {self.mode} · {label} {model} · {state}"))

    # -- actions --------------------------------------------------------------------------

    def action_stop_or_leave(self) -> None:
        """Escape: stop the answer; when idle, leave the input."""
        if self.stop():
            return
        field = self.query_one("#chat-input", Input)
        if field.has_focus:
            self.screen.set_focus(None)

    def action_history(self, step: int) -> None:
        """Show the previous (-1) or next (+1) prompt in the input."""
        field = self.query_one("#chat-input", Input)
        if not field.has_focus or not self._history:
            return
        if self._history_at == len(self._history):
            self._draft = field.value
        at = max(0, min(len(self._history), self._history_at + step))
        self._history_at = at
        field.value = self._history[at] if at < len(self._history) else self._draft
        field.cursor_position = len(field.value)

    def action_cycle_preferred(self) -> None:
        """Cycle the preferred model through the catalog (and none)."""
        catalog_ids = getattr(self._engine, "catalog_ids", None)
        if callable(catalog_ids):
            known: list[str] = list(catalog_ids())
        else:  # a bare engine (tests): its manager's catalog
            catalog = getattr(getattr(self._engine, "manager", None), "catalog", None)
            known = [entry.id for entry in catalog or ()]
        ids: list[str | None] = [None, *known]
        at = ids.index(self.preferred) if self.preferred in ids else 0
        self.preferred = ids[(at + 1) % len(ids)]

    # -- sending --------------------------------------------------------------------------

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value
        if not prompt.strip():
            return
        if self.generating:
            self.notify("An answer is still running: escape stops it.", severity="warning")
            return
        event.input.value = ""
        if not self._history or self._history[-1] != prompt:
            self._history.append(prompt)
            del self._history[:-HISTORY_LIMIT]
        self._history_at = len(self._history)
        self._draft = ""
        await self.ask(prompt)

    async def ask(self, prompt: str) -> None:
        """Send ``prompt`` as the operator would (the input calls this on enter)."""
        log = self.query_one("#chat-log", VerticalScroll)
        self._tail = Static("", classes="chat-answer-tail")
        self._tail.display = False
        self._meta = Static(Text("routing…"), classes="chat-meta")
        self._text, self._rendered, self._clean = "", 0, StreamSanitizer()
        await log.mount_all([Static(Text("> " + sanitize(prompt, multiline=True)), classes="chat-prompt"),
                             self._tail, self._meta])
        with self._lock:
            self._pending.clear()
            self._flush_posted = False
            self._stream = None
            self._stop_requested = False
        self.generating = True
        mode = self.mode
        model = self.preferred if mode == "manual" else None
        preferred = self.preferred if mode == "hybrid" else None
        self._generate(prompt, mode, model, preferred)

    @work(thread=True, exclusive=True, group="chat", exit_on_error=False, description="chat generation")
    def _generate(self, prompt: str, mode: str, model: str | None, preferred: str | None) -> None:
        """The worker: open the stream, put its pieces in the buffer, post the end."""
        try:
            stream = self._engine.stream_quick(prompt, mode=mode, model=model, preferred=preferred,
                                               params=self._params, source="tui")
        except BaseException as exc:  # noqa: BLE001 - every failure is shown in the pane
            self.post_message(self.GenerationEnded(None, exc))
            return
        with self._lock:
            self._stream = stream
            stop_first = self._stop_requested
        if stop_first:
            stream.cancel()
        if stream.will_load:
            note = f"loading {stream.model_id} into {stream.load_tier}…"
        else:
            note = f"{stream.model_id} answering…"
        self.post_message(self.GenerationStarted(sanitize(note)))
        try:
            with stream:
                for piece in stream:
                    self._buffer(piece)
        except BaseException as exc:  # noqa: BLE001
            self.post_message(self.GenerationEnded(None, exc))
            return
        self.post_message(self.GenerationEnded(stream.result, None))

    def _buffer(self, piece: str) -> None:
        """Worker thread: keep ``piece``; post one TokensArrived per burst."""
        with self._lock:
            self._pending.append(piece)
            if self._flush_posted:
                return
            self._flush_posted = True
        self.post_message(self.TokensArrived())

    @property
    def answer_text(self) -> str:
        """The current (or last) answer as shown so far, sanitised: rendered blocks and tail."""
        return self._text

    async def _drain(self, *, final: bool = False) -> None:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            self._flush_posted = False
        if self._tail is None:
            return
        self._text += self._clean.feed(text) + (self._clean.flush() if final else "")
        rest = self._text[self._rendered:]
        done = rest if final else self._complete_blocks(rest)
        if done:
            self._rendered += len(done)
            rest = rest[len(done):]
            block = Markdown(done, classes="chat-answer", open_links=False)
            await self.query_one("#chat-log", VerticalScroll).mount(block, before=self._tail)
        if text or done:
            self._tail.update(Text(rest.strip("\n")), layout=False)
            self._tail.display = bool(rest.strip())
            _layout_if_resized(self._tail)

    def _complete_blocks(self, text: str) -> str:
        """The leading part of ``text`` made of whole top-level blocks (those followed by the
        start of another); only the part not yet rendered is parsed, so this stays cheap."""
        starts = [token.map[0] for token in self._parser.parse(text) if token.level == 0 and token.map]
        if len(starts) < 2:
            return ""
        return "".join(text.splitlines(keepends=True)[:starts[-1]])

    async def on_chat_pane_tokens_arrived(self, _message: TokensArrived) -> None:
        await self._drain()

    def on_chat_pane_generation_started(self, message: GenerationStarted) -> None:
        if self._meta is not None:
            self._meta.update(Text(message.note))

    async def on_chat_pane_generation_ended(self, message: GenerationEnded) -> None:
        await self._drain(final=True)
        if self._tail is not None:
            self._tail.display = False
            self._tail = None
        with self._lock:
            self._stream = None
        meta = self._meta
        if message.result is not None:
            if meta is not None:
                meta.update(Text("— " + footer_line(message.result)))
            self.generating = False
            self.post_message(self.AnswerFinished(self, message.result))
        else:
            kind, reason = describe_error(message.error or RuntimeError("no result"))
            if meta is not None:
                meta.update(Text(f"{kind}: {reason}"))
                meta.add_class("chat-error")
            self.generating = False
            self.post_message(self.AnswerFailed(self, kind, reason))
