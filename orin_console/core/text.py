"""The one sanitiser for text from outside: file names, GGUF metadata, runner log lines, output.

Text the console did not write itself is data. Before any front end (the CLI, the TUI, the
API) shows it, :func:`sanitize` replaces every character that could change how a terminal or
a page renders what follows, so a file called ``"\\x1b[2Jmodel.gguf"`` cannot clear the
screen and a metadata string holding U+202E cannot show its text backwards:

- C0 controls (U+0000–U+001F, ESC and CR included), DEL (U+007F) and C1 controls
  (U+0080–U+009F): ``"\\n"`` and ``"\\t"`` survive only with ``multiline=True``;
- the bidirectional embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069) and
  marks (U+200E LRM, U+200F RLM, U+061C ALM);
- the Unicode line and paragraph separators (U+2028, U+2029), which some terminals and every
  browser treat as line breaks;
- lone surrogates (U+D800–U+DFFF), which is what a file name that is not valid UTF-8 holds
  after ``os.fsdecode`` (``surrogateescape``); printing one raises ``UnicodeEncodeError``.

The replacement is U+FFFD (REPLACEMENT CHARACTER), one for each character replaced: it is
visible, cannot be mistaken for a literal ``?`` that really is in a file name, and keeps the
text's length, so a position in the sanitised text is the same position in the original.
A caret form (``^[``) was not chosen because it changes lengths and reads like real text.

Escaping markup (Rich ``[bold]``, HTML) is not done here: it is the front end's job, and a
sanitised string is still plain text that must be printed as such (the CLI prints with
``markup=False``).

Example:
    >>> sanitize("evil\\x1b[2J\\u202emodel")
    'evil\\ufffd[2J\\ufffdmodel'
    >>> sanitize("line one\\nline two", multiline=True)
    'line one\\nline two'
"""

from __future__ import annotations

import os
import re
from typing import Final

__all__ = ["REPLACEMENT", "sanitize", "sanitize_path"]

REPLACEMENT: Final = "\ufffd"
"""What each unsafe character becomes (U+FFFD REPLACEMENT CHARACTER)."""

_ALWAYS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 except TAB and LF, DEL, C1
    "\u061c\u200e\u200f"  # ALM, LRM, RLM
    "\u2028\u2029"  # line and paragraph separators
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2066-\u2069"  # bidi isolates
    "\ud800-\udfff"  # lone surrogates
)
_UNSAFE_MULTILINE: Final = re.compile(f"[{_ALWAYS}]")
_UNSAFE_ONE_LINE: Final = re.compile(f"[{_ALWAYS}\t\n]")


def sanitize(text: str, *, multiline: bool = False, replacement: str = REPLACEMENT) -> str:
    """Return ``text`` with every control, bidi and surrogate character replaced.

    Args:
        text: untrusted text (a file name, a metadata value, a log line, model output).
        multiline: keep ``"\\n"`` and ``"\\t"`` (a chat template, a block of log lines);
            otherwise they are replaced too, so the result is one line.
        replacement: what each unsafe character becomes; U+FFFD unless a caller needs a
            plain-ASCII form.

    Returns:
        The cleaned text, the same object when there was nothing to replace.
    """
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE_ONE_LINE
    if pattern.search(text) is None:
        return text
    return pattern.sub(replacement, text)


def sanitize_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """Return a file name as one line of safe text for a message.

    Bytes that are not UTF-8 (kept by Python as lone surrogates, or given as ``bytes``) and
    control characters in the name each show as U+FFFD; the rest of the name is unchanged.

    Args:
        path: the path as the user or the file system gave it.
    """
    raw = os.fspath(path)
    text = os.fsdecode(raw) if isinstance(raw, bytes) else raw
    return sanitize(text)
