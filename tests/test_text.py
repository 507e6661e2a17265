"""The one sanitiser (core/text.py): what it replaces, what it keeps, and that it is total."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.core.text import REPLACEMENT, sanitize, sanitize_path

R = REPLACEMENT

_BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("model\x1b[2J.gguf", f"model{R}[2J.gguf"),  # ESC (a CSI that clears the screen)
        ("a\x9bb", f"a{R}b"),  # C1 CSI, one byte in some terminals
        ("a\x7fb\x00c", f"a{R}b{R}c"),  # DEL and NUL
        ("over\rwrite", f"over{R}write"),  # CR returns to the line's start
        ("a\u2028b\u2029c", f"a{R}b{R}c"),  # line and paragraph separators
        ("bad\udcffname", f"bad{R}name"),  # a lone surrogate (surrogateescape)
        ("plain text, émoji 🙂 and 中文", "plain text, émoji 🙂 and 中文"),
    ],
)
def test_replaces_controls_and_keeps_the_rest(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


@pytest.mark.parametrize("mark", _BIDI)
def test_every_bidi_override_isolate_and_mark_is_replaced(mark: str) -> None:
    assert sanitize(f"abc{mark}def") == f"abc{R}def"


def test_newline_and_tab_survive_only_in_multiline_mode() -> None:
    text = "line one\n\tline two\x1b[0m"
    assert sanitize(text) == f"line one{R}{R}line two{R}[0m"
    assert sanitize(text, multiline=True) == f"line one\n\tline two{R}[0m"


def test_clean_text_is_returned_as_is_and_replacement_is_selectable() -> None:
    text = "nothing to do here"
    assert sanitize(text) is text
    assert sanitize("a\x1bb", replacement="?") == "a?b"


def test_result_always_encodes_as_utf8() -> None:
    """A lone surrogate would make ``print`` raise UnicodeEncodeError; none survives."""
    sanitize("\udc80\ud800x").encode("utf-8")


def test_sanitize_path_handles_bytes_surrogates_and_path_objects(tmp_path: Path) -> None:
    assert sanitize_path(b"dir/na\xffme\x1b.gguf") == f"dir/na{R}me{R}.gguf"
    assert sanitize_path(os.fsdecode(b"x\xfe.gguf")) == f"x{R}.gguf"
    assert sanitize_path(tmp_path / "ok.gguf") == str(tmp_path / "ok.gguf")
    assert sanitize_path(Path("two\nlines")) == f"two{R}lines"


_UNSAFE = {"\u2028", "\u2029", *_BIDI}
# Hypothesis never draws surrogates on its own; mix them in with the characters to avoid.
_ANY_CHAR = st.one_of(
    st.characters(exclude_categories=()),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from(sorted(_UNSAFE)),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet=_ANY_CHAR, max_size=64))
def test_nothing_unsafe_survives_any_input(text: str) -> None:
    for multiline in (False, True):
        out = sanitize(text, multiline=multiline)
        assert len(out) == len(text)
        out.encode("utf-8")
        keep = "\n\t" if multiline else ""
        for ch, orig in zip(out, text, strict=True):
            assert ch in keep or unicodedata.category(ch) not in ("Cc", "Cs")
            assert ch not in _UNSAFE
            assert ch in (orig, R)
