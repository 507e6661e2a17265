"""``orin-console`` with no command, before the terminal opens: ``--serve``'s address and the
bind check, and attaching (``--attach``, or by itself to the core serving on this machine) (the
console in a terminal is tested in test_console_pty.py)."""

from __future__ import annotations

import argparse
import socket
import types
from typing import Any

import pytest

from orin_console.cli.console import _api, parse_address
from orin_console.cli.main import build_parser
from orin_console.core.errors import OrinError
from orin_console.core.settings import load_settings


@pytest.mark.parametrize(("text", "expected"), [
    ("", ("127.0.0.1", 8000)),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    (":0", ("127.0.0.1", 0)),
    ("9001", ("127.0.0.1", 9001)),
    ("0.0.0.0", ("0.0.0.0", 8000)),
    ("[::1]:8080", ("::1", 8080)),
    ("[::1]", ("::1", 8000)),
])
def test_serve_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, "127.0.0.1", 8000) == expected


@pytest.mark.parametrize("text", ["host:port", "127.0.0.1:70000", "[::1", "[::1]x"])
def test_bad_serve_addresses_are_refused_with_the_option_named(text: str) -> None:
    with pytest.raises(OrinError, match="--serve"):
        parse_address(text, "127.0.0.1", 8000)


def test_the_options_parse_and_off_loopback_needs_a_token() -> None:
    args = build_parser().parse_args(["--serve"])
    assert args.serve == "" and args.command is None
    settings = load_settings(env={})
    assert _api(args, settings) == (settings.bind_host, settings.port, None)
    assert _api(argparse.Namespace(), settings) is None  # no --serve: no web stack
    off = build_parser().parse_args(["--serve", "0.0.0.0:8000"])
    with pytest.raises(OrinError, match="needs a token"):
        _api(off, settings)
    with_token = build_parser().parse_args(["--serve", "0.0.0.0:8000", "--token", "s3cret"])
    assert _api(with_token, settings) == ("0.0.0.0", 8000, "s3cret")


class _TTY:
    """A standard stream that says it is a terminal (the console's check), and nothing else."""

    def isatty(self) -> bool:
        return True


def _as_terminal(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Pretend stdin and stdout are a terminal; record the attach the CLI would open."""
    from orin_console.cli import attach, console

    calls: list[tuple[str, str | None]] = []
    monkeypatch.setattr(console, "sys", types.SimpleNamespace(stdin=_TTY(), stdout=_TTY()))
    monkeypatch.setattr(attach, "run_attached", lambda _ctx, url, token: calls.append((url, token)) or 0)
    return calls


def test_orin_console_attaches_to_the_core_serving_on_this_machine(tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from orin_console.cli.main import main
    from orin_console.core.instance import hold_instance

    state = tmp_path / "state"
    monkeypatch.setenv("ORIN_STATE_DIR", str(state))
    calls = _as_terminal(monkeypatch)
    with hold_instance(state, "serve", "http://127.0.0.1:8125"):  # `orin-console serve` runs
        assert main([]) == 0
    assert calls == [("http://127.0.0.1:8125", None)]
    monkeypatch.setenv("ORIN_TOKEN", "s3cret-token")
    assert main(["--attach", "http://10.0.0.5:8000"]) == 0  # the token from the environment (the web console's)
    assert calls[-1] == ("http://10.0.0.5:8000", "s3cret-token")


def test_attach_refusals_exit_2_with_the_fix(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from orin_console.cli.main import main

    monkeypatch.setenv("ORIN_STATE_DIR", str(tmp_path / "state"))
    assert main(["--attach", "http://10.0.0.5:8000"]) == 2
    assert "needs its token" in capsys.readouterr().err
    assert main(["--attach", "http://127.0.0.1:8000", "--serve"]) == 2
    assert "do not go together" in capsys.readouterr().err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from orin_console.cli import console

    monkeypatch.setattr(console, "sys", types.SimpleNamespace(stdin=_TTY(), stdout=_TTY()))
    assert main(["--attach", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot attach to http://127.0.0.1:{port}" in err and "Traceback" not in err
