"""The ``orin-console`` command: parses arguments and dispatches to the subcommand modules.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace and the :class:`Context`; it returns an exit code).
Errors the core raises on purpose (:class:`OrinError`) and bad arguments end with a one-line
message and exit status 2; no traceback reaches the user unless ``ORIN_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from orin_console import __version__
from orin_console.core.errors import OrinError
from orin_console.core.lifecycle import ConsoleTerminated, terminate_on_signals
from orin_console.core.settings import Settings, load_settings, unknown_variables
from orin_console.core.text import sanitize

EXIT_USAGE = 2


@dataclass
class Context:
    """What every subcommand gets: the settings and where to print."""

    settings: Settings
    console: Console
    err: Console


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, exit status 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from orin_console.cli.guard import dash_hint

        sys.stderr.write(f"{self.prog}: error: {sanitize(message)}{dash_hint(_ARGV)} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


_ARGV: list[str] = []
"""The arguments being parsed (for :func:`~orin_console.cli.guard.dash_hint`)."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommand modules register themselves here)."""
    from orin_console.cli import models as models_cmd

    parser = _Parser(
        prog="orin-console",
        description="Operator console for local LLMs on a Jetson Orin Nano.",
    )
    parser.add_argument("--version", action="version", version=f"orin-console {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="settings file (default: $ORIN_CONFIG or ~/.config/orin-console/config.toml)",
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalog file (default: the catalog_path setting, models.toml)",
    )
    parser.add_argument(
        "--serve",
        nargs="?",
        const="",
        default=None,
        metavar="HOST:PORT",
        help="the console also serves the API from its core (default: the bind_host and port "
             "settings, 127.0.0.1:8000; ':0' any free port; off loopback a token is required)",
    )
    parser.add_argument(
        "--attach",
        default=None,
        metavar="URL",
        help="attach the console to the server at URL (e.g. http://127.0.0.1:8000) instead of "
             "starting a core; without it the console attaches by itself to the core serving on "
             "this machine, if one runs. Quitting leaves the server and its models running",
    )
    parser.add_argument(
        "--token",
        dest="console_token",
        default=None,
        help="with --serve or --attach: the bearer token (default: the token setting / ORIN_TOKEN, "
             "which unlike an argument does not show in ps); --attach off loopback needs one",
    )
    parser.epilog = "Without a command, opens the console (needs a terminal)."
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    models_cmd.register(sub)
    for name in _OPTIONAL_COMMANDS:
        module = _import_optional(name)
        if module is not None:
            module.register(sub)
    return parser


# Subcommand modules added by later work register themselves through this list.
_OPTIONAL_COMMANDS: tuple[str, ...] = ("telemetry", "run", "plan", "serve", "web")


def _import_optional(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"orin_console.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"orin_console.cli.{name}":
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script. Returns the process exit status."""
    from orin_console.cli import guard

    closed = guard.check_std_streams()  # before argparse: even --help needs an open stdout
    if closed is not None:
        sys.stderr.write(closed + "\n")
        return EXIT_USAGE
    parser = build_parser()
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # `--help | head -1`
        guard.silence_output()
        return 0
    out = guard.CliConsole(highlight=False)
    err = guard.CliConsole(stderr=True, highlight=False)
    if args.command is None:  # no command: open the console
        from orin_console.cli import console as console_cmd

        args.func = console_cmd.run
    else:
        if args.serve is not None:  # it would be ignored silently
            parser.error(f"--serve applies to the console (no command), not to '{args.command}'; "
                         "to serve the API alone use `orin-console serve`")
        if args.attach is not None:
            hint = ("use `orin-console web --attach URL`" if args.command == "web" else
                    "commands run on this machine's own catalog; use the API (docs/api.md) or the SDK")
            parser.error(f"--attach applies to the console (no command), not to '{args.command}'; {hint}")
        guard.install_log_handler()
    try:
        with terminate_on_signals():
            overrides = {"catalog_path": args.catalog} if args.catalog is not None else {}
            settings = load_settings(args.config, **overrides)
            for warning in unknown_variables():
                err.print(f"orin-console: warning: {warning}", markup=False, soft_wrap=True)
            code = int(args.func(args, Context(settings=settings, console=out, err=err)) or 0)
            guard.flush_stdout()
            return code
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
        guard.silence_output()
        return 0
    except ConsoleTerminated as exc:
        err.print(f"orin-console: {exc}; shut down cleanly", markup=False)
        return exc.exit_status
    except OrinError as exc:
        err.print(f"orin-console: error: {sanitize(str(exc), multiline=True)}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("orin-console: interrupted", markup=False)
        return 130
    except OSError as exc:
        message = guard.environment_error(exc)
        if message is None:
            return _internal_error(exc, err)
        guard.silence_output(stderr=False)  # what is still buffered must not fail at exit
        sys.stderr.write(message + "\n")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the operator
        return _internal_error(exc, err)


def _internal_error(exc: Exception, err: Console) -> int:
    """A defect: say so in one line (the traceback only with ORIN_DEBUG=1)."""
    if os.environ.get("ORIN_DEBUG") == "1":
        traceback.print_exc()
    else:
        err.print(
            f"orin-console: internal error: {type(exc).__name__}: {sanitize(str(exc))} "
            "(set ORIN_DEBUG=1 for the traceback and please report it)",
            markup=False,
            soft_wrap=True,
        )
    return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
