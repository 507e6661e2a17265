"""``orin-console run "PROMPT"``: one answer, streamed, and which model gave it and why.

The answer goes to standard output; everything else (load progress, the closing line with
the model, the reason, TTFT and tokens/s) goes to standard error, so
``orin-console run "..." > answer.txt`` keeps only the answer. Control characters a model
emits (other than newline and tab) and bidi overrides are dropped (``core.text.sanitize``) so
they cannot drive the terminal or disguise text.

Exit status: 0 answered (or the reader of the answer went away, ``| head``); 1 the model
could not serve (load refused or failed, runner died, busy: said once); 2 bad input (one line
saying what: an unknown ``--model`` in any mode, standard input closed or not UTF-8 for
``-``, standard output closed or on a full disk); 130 interrupted (Ctrl-C cancels the generation
within one token and ends the runners); 143 / 129 SIGTERM / SIGHUP (the same, then the console
shuts down cleanly).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from orin_console.cli import guard
from orin_console.cli.main import Context
from orin_console.core import create_core
from orin_console.core.engine.inference import EngineStream
from orin_console.core.engine.selection import MODES, Mode
from orin_console.core.engine.types import EngineError, GenerationParams, Result
from orin_console.core.errors import OrinError
from orin_console.core.events.bus import Event, EventBus
from orin_console.core.events.kinds import LoadProgress
from orin_console.core.instance import hold_instance
from orin_console.core.lifecycle import ConsoleTerminated
from orin_console.core.manager.types import ModelBusy, ModelUnavailable
from orin_console.core.memory.admission import AdmissionRefused
from orin_console.core.runner import RunnerError
from orin_console.core.text import StreamSanitizer, sanitize

EXIT_SERVE_FAILED = 1
EXIT_INTERRUPTED = 130
STDIN_LIMIT = 4 * 1024 * 1024
"""The longest prompt read from standard input (no model's context holds more)."""
_SERVE_ERRORS = (AdmissionRefused, ModelBusy, ModelUnavailable, RunnerError)


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    p = sub.add_parser("run", help="answer one prompt with the best model, streamed")
    p.add_argument("prompt", help='the prompt ("-" reads it from standard input)')
    p.add_argument("--model", metavar="ID", help="the model (manual mode), or the preferred one (hybrid)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="auto picks the model (default); manual uses --model (the default when "
                        "--model is given); hybrid uses --model when it is loaded and fits")
    p.add_argument("--max-tokens", type=int, default=256, metavar="N", help="most tokens to generate (default 256)")
    p.add_argument("--temperature", type=float, default=None, help="0 (greedy) to 2 (default 0.8)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, (0, 1] (default 0.95)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed for a reproducible answer")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="end the answer at TEXT (repeatable, up to 4)")
    p.add_argument("--raw", action="store_true",
                   help="send the prompt as plain text, not through the model's chat template")
    p.add_argument("--no-stream", action="store_true", help="print the answer when it is complete")
    p.add_argument("--explain", action="store_true", help="also print the full selection reasoning")
    p.add_argument("--json", action="store_true", help="print the result as JSON (implies --no-stream)")
    p.set_defaults(func=cmd_run)


def _clean(text: str) -> str:
    """Model output made safe for a terminal: control and bidi characters dropped."""
    return sanitize(text, multiline=True, replacement="")


class _Progress:
    """Load progress on standard error: one updating line on a terminal, else start and end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.shown = -1
        self._detach: Callable[[], None] | None = None

    def attach(self, bus: EventBus) -> None:
        """Show the load progress events published on ``bus``."""
        sub = bus.subscribe(self._on_event, kinds=(LoadProgress,), name="cli-load-progress")
        def detach() -> None:
            bus.unsubscribe(sub)

        self._detach = detach

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, LoadProgress):
            return
        percent = int(event.fraction * 100)
        if self.tty and percent != self.shown:
            self.shown = percent
            self.out.write(f"\rloading {event.model_id} into {event.tier}… {percent:3d}%")
            self.out.flush()

    def end(self) -> None:
        """Stop showing progress and clear the line (idempotent)."""
        if self._detach is not None:
            self._detach()  # joins the event thread: nothing is written after this
            self._detach = None
        if self.tty and self.shown >= 0:
            self.out.write("\r\x1b[K")
            self.out.flush()
        self.shown = -1


def read_prompt(arg: str) -> str:
    """The prompt: the argument, or standard input for ``-`` (bounded, UTF-8 only).

    Raises:
        EngineError: standard input is closed, is not UTF-8 or holds more than
            :data:`STDIN_LIMIT` bytes.
    """
    if arg != "-":
        return arg
    if guard.stdin_closed():
        raise EngineError('standard input is closed (started with <&-); pipe the prompt in '
                          '(echo "…" | orin-console run -) or give it as an argument')
    data = sys.stdin.buffer.read(STDIN_LIMIT + 1)
    if len(data) > STDIN_LIMIT:
        raise EngineError(f"standard input holds more than {STDIN_LIMIT // (1024 * 1024)} MB; a prompt must fit "
                          "the model's context: shorten it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EngineError(f"standard input is not valid UTF-8 (byte offset {exc.start}); "
                          "convert it first, e.g. with iconv -t UTF-8") from None


def _check_model(known: list[str], model: str | None) -> None:
    """An unknown ``--model`` is an error in every mode (hybrid would silently pick another)."""
    if model is not None and model not in known:
        raise OrinError(f"no model '{_clean(model)[:80]}' in the catalog (known: {', '.join(known) or 'none'}); "
                        "see `orin-console models list`")


def _params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams.build(max_tokens=args.max_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=args.seed,
                                  stop=tuple(args.stop) if args.stop else None)


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    """Route the prompt, stream the answer, print the closing line; see the module docstring."""
    mode: Mode = args.mode or ("manual" if args.model else "auto")
    if mode == "auto" and args.model:
        raise EngineError("--model needs --mode manual or hybrid (auto picks the model itself)")
    prompt = read_prompt(args.prompt)
    params = _params(args)  # bad parameters fail before anything starts
    streamed = not (args.no_stream or args.json)
    quiet = guard.DropLogger("orin_console.core.manager.loads")  # run reports a runner death itself
    with _filtered(quiet), hold_instance(ctx.settings.state_dir, "run"), \
            create_core(ctx.settings, telemetry=False, optimiser=False, watch_interval_s=0) as core:
        manager, engine = core.manager, core.engine
        _check_model([entry.id for entry in manager.catalog], args.model)
        stream = engine.stream_quick(
            prompt, mode=mode, model=args.model if mode == "manual" else None,
            preferred=args.model if mode == "hybrid" else None, params=params,
            as_chat=False if args.raw else None, incremental=streamed)
        progress = _Progress(sys.stderr)
        if stream.will_load:
            if not progress.tty:
                sys.stderr.write(f"loading {stream.model_id} into {stream.load_tier}…\n")
                sys.stderr.flush()
            progress.attach(manager.bus)
        try:
            return _serve(stream, args, ctx, progress)
        except _SERVE_ERRORS as exc:
            progress.end()
            ctx.err.print(f"orin-console: {stream.model_id} could not answer: {_clean(str(exc))}", markup=False,
                          soft_wrap=True)
            return EXIT_SERVE_FAILED
        finally:
            progress.end()


@contextmanager
def _filtered(log_filter: logging.Filter) -> Iterator[None]:
    """``log_filter`` on the CLI's warning handlers for the duration."""
    handlers = guard.cli_handlers()
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)


def _serve(stream: EngineStream, args: argparse.Namespace, ctx: Context, progress: _Progress) -> int:
    out = sys.stdout
    tail = "\n"
    interrupted = False
    clean = StreamSanitizer(replacement="")  # an emoji's ZWJ may end one piece: held for the next
    try:
        for piece in itertools.chain(stream, (None,)):  # None: the end, where a held joiner is decided
            progress.end()
            if not args.json:
                text = clean.feed(piece) if piece is not None else clean.flush()
                if text:
                    out.write(text)
                    out.flush()
                    tail = text[-1]
    except KeyboardInterrupt as exc:
        interrupted = True
        stream.cancel()
        try:
            for _ in stream:  # the runner stops within one token
                pass
        except KeyboardInterrupt:
            pass
        if isinstance(exc, ConsoleTerminated):
            raise  # SIGTERM/SIGHUP: the core closes on the way out; main reports it
    except BrokenPipeError:  # e.g. `| head`: stop generating, say nothing more
        stream.close()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        return 0
    progress.end()
    if tail != "\n" and not args.json:
        out.write("\n")
        out.flush()
    result = stream.result
    if result is None:
        ctx.err.print("orin-console: interrupted before the answer started", markup=False)
        return EXIT_INTERRUPTED
    if args.json:
        out.write(json.dumps(result.to_dict(), ensure_ascii=True) + "\n")
    else:
        _report(result, args, ctx)
    return EXIT_INTERRUPTED if interrupted else 0


def _report(result: Result, args: argparse.Namespace, ctx: Context) -> None:
    ctx.err.print(f"— {_clean(result.summary())}", markup=False, soft_wrap=True, highlight=False)
    if args.explain:
        guess = result.selection.guess
        ctx.err.print(f"  task: {_clean(guess.explanation)} (confidence {guess.confidence:.2f})", markup=False,
                      soft_wrap=True)
        ctx.err.print(f"  selection: {_clean(result.explanation)}", markup=False, soft_wrap=True)
        for candidate in result.selection.candidates:
            ctx.err.print(f"    {candidate.score:7.2f}  {candidate.model_id}: {_clean(candidate.why)}", markup=False,
                          soft_wrap=True)
        ctx.err.print(f"  prompt format: {result.prompt_format}; {result.prompt_tokens} prompt tokens; "
                      f"{result.elapsed_s:.2f} s in all", markup=False)
