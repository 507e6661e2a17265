"""``orin-console`` with no command, before the terminal opens: ``--serve``'s address and the
bind check (the console in a terminal is tested in test_console_pty.py)."""

from __future__ import annotations

import argparse

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
