"""Streamed model output on the terminal (``run``): cleaned as a stream, so an emoji sequence
whose ZWJ ends one piece survives, while escape sequences and hidden tag text do not."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from orin_console.cli.main import Context
from orin_console.cli.run import EXIT_INTERRUPTED, _Progress, _serve
from orin_console.core.settings import Settings

ZWJ = "\u200d"


class Pieces:
    """A stand-in for an engine stream that yields ``pieces`` and ends without a result."""

    result = None

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[str]:
        return iter(self.pieces)

    def cancel(self) -> None:
        """Nothing runs."""

    def close(self) -> None:
        """Nothing runs."""


def serve(pieces: list[str]) -> tuple[int, str]:
    errors = io.StringIO()
    ctx = Context(settings=Settings(), console=Console(file=io.StringIO()), err=Console(file=errors, width=100))
    stream: Any = Pieces(pieces)
    code = _serve(stream, argparse.Namespace(json=False), ctx, _Progress(io.StringIO()))
    return code, errors.getvalue()


def test_an_emoji_sequence_cut_between_pieces_reaches_the_terminal_whole(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = serve(["Done ", "👩", ZWJ, "💻", " and ", "🏴", "\U000e0067\U000e0062", "\U000e0073\U000e0063",
                     "\U000e0074\U000e007f", "!"])
    assert code == EXIT_INTERRUPTED  # no result: the stand-in ends like an interrupted answer
    out = capsys.readouterr().out
    assert out == f"Done 👩{ZWJ}💻 and 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f!\n"


def test_escape_sequences_hidden_tags_and_a_trailing_joiner_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    serve(["ok\x1b[2J", "\U000e0068", "\U000e0069", " bye", "🙂", ZWJ])
    assert capsys.readouterr().out == "ok[2J bye🙂\n"
