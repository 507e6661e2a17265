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
  after ``os.fsdecode`` (``surrogateescape``); printing one raises ``UnicodeEncodeError``;
- invisible characters (below).

Invisible characters
--------------------
Characters that render as nothing (Unicode's Default_Ignorable_Code_Point set, plus the
interlinear annotation controls U+FFF9–U+FFFB) let two names that look the same differ
(``"gemma3"`` and ``"gem\\u200bma3"``: spoofing) and let text carry a message no reader sees
(the tag characters U+E0020–U+E007E spell ASCII invisibly: "ASCII smuggling"; a run of
variation selectors after an emoji can hold any bytes). The policy:

- **One-line text** (the default: ids, file names, metadata, anything that names or
  identifies): every invisible character is replaced, the joiners and selectors included.
  What tells two identifiers apart must be visible, so ``"❤\\ufe0f.gguf"`` shows as
  ``"❤\\ufffd.gguf"``: a little uglier, never ambiguous.
- **Multi-line text** (``multiline=True``: model output, chat templates, long messages): the
  characters that have no legitimate use in running text are replaced always (U+200B ZWSP,
  U+2060 WJ, U+FEFF BOM, U+00AD soft hyphen, U+180E, U+034F CGJ, the Hangul and Khmer fillers,
  the invisible operators U+2061–U+2064, the deprecated U+206A–U+206F, the language tag
  U+E0001 and unassigned ignorables). Four kinds are kept **only where writing systems and
  emoji need them**, one at a time, and replaced anywhere else:

  - U+200D ZWJ between two emoji (``"👩\\u200d💻"``; the emoji before it may carry a skin
    tone or U+FE0F), or after a letter or mark of a script that uses joiners (Arabic,
    Syriac, Thaana, N'Ko, the Indic scripts, Sinhala, Tibetan, Myanmar, Khmer, Mongolian:
    Devanagari half forms, Malayalam chillus) and before a visible character;
  - U+200C ZWNJ after a letter or mark of those scripts and before a visible character
    (Persian, between the prefix mi- and its verb; Devanagari ``"क्\\u200cष"``);
  - a variation selector directly after the character it selects a form of: U+FE00–U+FE0F
    after a letter, digit, punctuation or symbol (``"❤\\ufe0f"``, the keycap
    ``"#\\ufe0f\\u20e3"``), U+E0100–U+E01EF after a CJK ideograph, the Mongolian free
    variation selectors after a Mongolian letter; a second selector in a row is replaced;
  - tag characters only as an emoji tag sequence: U+1F3F4 (🏴), 2 to 7 tag letters or digits
    (U+E0030–U+E0039, U+E0061–U+E007A) and U+E007F CANCEL TAG, which is how the flags of
    England, Scotland and Wales are written. Any other tag run is replaced whole.

  "Emoji" is an approximation of Unicode's Extended_Pictographic property by blocks (Python's
  ``unicodedata`` does not carry it): U+1F000–U+1FFFF, U+2600–U+27BF, U+2B00–U+2BFF and the
  scattered older pictographs (©, ®, ‼, ™, arrows, ⌚...).

  A joiner kept this way can still carry a bit of hidden information per letter pair, and a
  flag seven hidden letters: the channel is that narrow, and every flag shows. Streamed output
  arrives in pieces, and a piece may end between an emoji and its ZWJ;
  :class:`StreamSanitizer` holds back a trailing joiner, selector or tag run until the next
  piece decides it, so a stream is cleaned exactly as the whole text would be.

The replacement is U+FFFD (REPLACEMENT CHARACTER), one for each character replaced: it is
visible, cannot be mistaken for a literal ``?`` that really is in a file name, and keeps the
text's length, so a position in the sanitised text is the same position in the original.
A caret form (``^[``) was not chosen because it changes lengths and reads like real text.

Text with nothing to replace is returned as the same object. ASCII text (most model output;
``str.isascii`` is O(1)) is searched for its controls alone, other text for a superset of the
candidates (a character class with several ranges above U+FFFF makes ``re`` several times
slower per character, so every character above U+1BC9F counts as a candidate there); the
per-character decisions above run only on text that holds a candidate
(``benchmarks/sanitize.py`` measures it against the rule before the invisible characters).

Escaping markup (Rich ``[bold]``, HTML) is not done here: it is the front end's job, and a
sanitised string is still plain text that must be printed as such (the CLI prints with
``markup=False``).

Example:
    >>> sanitize("evil\\x1b[2J\\u202emodel")
    'evil\\ufffd[2J\\ufffdmodel'
    >>> sanitize("line one\\nline two", multiline=True)
    'line one\\nline two'
    >>> sanitize("gem\\u200bma3")
    'gem\\ufffdma3'
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Final

__all__ = ["REPLACEMENT", "StreamSanitizer", "sanitize", "sanitize_path"]

REPLACEMENT: Final = "\ufffd"
"""What each unsafe character becomes (U+FFFD REPLACEMENT CHARACTER)."""

_ALWAYS_BMP = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 except TAB and LF, DEL, C1
    "\u061c\u200e\u200f"  # ALM, LRM, RLM
    "\u2028\u2029"  # line and paragraph separators
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2066-\u2069"  # bidi isolates
    "\ud800-\udfff"  # lone surrogates
    # invisible, with no use in running text (Default_Ignorable_Code_Point, less the rest)
    "\u00ad"  # soft hyphen
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u180e"  # Mongolian vowel separator
    "\u200b"  # zero width space
    "\u2060-\u2065"  # word joiner, invisible operators, reserved
    "\u206a-\u206f"  # deprecated format characters
    "\ufeff"  # zero width no-break space (BOM)
    "\ufff0-\ufffb"  # reserved, interlinear annotation
)
_ALWAYS_ASTRAL = (
    "\U0001bca0-\U0001bca3"  # shorthand format controls
    "\U0001d173-\U0001d17a"  # musical symbol format controls
    "\U000e0000-\U000e001f"  # reserved, LANGUAGE TAG
    "\U000e0080-\U000e00ff"  # reserved
    "\U000e01f0-\U000e0fff"  # reserved
)
_CONTEXTUAL_BMP = (  # invisible, with legitimate uses in context (multi-line text keeps those)
    "\u180b-\u180d\u180f"  # Mongolian free variation selectors
    "\u200c\u200d"  # ZWNJ, ZWJ
    "\ufe00-\ufe0f"  # variation selectors 1-16
)
_CONTEXTUAL_ASTRAL = (
    "\U000e0020-\U000e007f"  # tag characters and CANCEL TAG
    "\U000e0100-\U000e01ef"  # variation selectors 17-256
)
_ALWAYS = _ALWAYS_BMP + _ALWAYS_ASTRAL
_CONTEXTUAL = _CONTEXTUAL_BMP + _CONTEXTUAL_ASTRAL
# The fast path (see the module docstring): ASCII text is searched for its controls alone,
# other text for a superset without ranges above U+FFFF (emoji text takes the slow path).
_ASCII_CONTROLS: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_ASCII_CONTROLS_ONE_LINE: Final = re.compile("[\x00-\x1f\x7f]")
_CANDIDATE_MULTILINE: Final = re.compile(f"[{_ALWAYS_BMP}{_CONTEXTUAL_BMP}\U0001bca0-\U0010ffff]")
_CANDIDATE_ONE_LINE: Final = re.compile(f"[{_ALWAYS_BMP}{_CONTEXTUAL_BMP}\t\n\U0001bca0-\U0010ffff]")
_UNSAFE_ONE_LINE: Final = re.compile(f"[{_ALWAYS}{_CONTEXTUAL}\t\n]")
_IS_CONTEXTUAL: Final = re.compile(f"[{_CONTEXTUAL}]")
_IS_INVISIBLE: Final = re.compile(f"[{_ALWAYS}{_CONTEXTUAL}]")

_ZWNJ, _ZWJ, _VS16, _BLACK_FLAG = "\u200c", "\u200d", "\ufe0f", "\U0001f3f4"
_PICTOGRAPHIC: Final = re.compile(
    "[\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u2388\u23cf"
    "\u23e9-\u23f3\u23f8-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u27bf\u2934\u2935"
    "\u2b00-\u2bff\u3030\u303d\u3297\u3299\U0001f000-\U0001fffd]")
"""Emoji, approximately (Extended_Pictographic by blocks)."""
_JOINING_SCRIPTS: Final = re.compile(
    "[\u0600-\u08ff\u0900-\u0dff\u0f00-\u0fff\u1000-\u109f\u1780-\u18af"
    "\ua8e0-\ua8ff\ua9e0-\ua9ff\uaa60-\uaa7f\ufb50-\ufdff\ufe70-\ufefe]")
"""Scripts that use ZWJ and ZWNJ inside words (Arabic ... Mongolian)."""
_CJK: Final = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U000323af]")
_FLAG_TAGS: Final = re.compile("[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,7}\U000e007f")
"""The tags of an emoji tag sequence after 🏴 (``gbsct`` + CANCEL TAG: Scotland)."""
_BASE_CATEGORIES: Final = frozenset("LNPS")

_MAX_HELD: Final = 16
"""Characters :class:`StreamSanitizer` holds back at most (a flag's tags are 8)."""


def _is_tag(ch: str) -> bool:
    return "\U000e0020" <= ch <= "\U000e007f"


def _is_joining_letter(ch: str) -> bool:
    return bool(ch) and _JOINING_SCRIPTS.match(ch) is not None and unicodedata.category(ch)[0] in "LM"


def _is_visible(ch: str) -> bool:
    """A character a joiner may stand before: anything shown (letters, spaces, punctuation)."""
    return bool(ch) and _IS_INVISIBLE.match(ch) is None and unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Cn")


def _keeps(ch: str, before: str, after: str) -> bool:
    """Whether multi-line text keeps the joiner or selector ``ch`` between ``before`` (the
    character before it, "" when that was replaced or there is none) and ``after``."""
    if ch == _ZWJ and (_PICTOGRAPHIC.match(before) is not None or before == _VS16) \
            and after and _PICTOGRAPHIC.match(after) is not None:
        return True
    if ch in (_ZWJ, _ZWNJ):
        return _is_joining_letter(before) and _is_visible(after)
    if not before:
        return False
    if "\ufe00" <= ch <= "\ufe0f":
        return unicodedata.category(before)[0] in _BASE_CATEGORIES and _IS_INVISIBLE.match(before) is None
    if "\U000e0100" <= ch <= "\U000e01ef":
        return _CJK.match(before) is not None
    return "\u1800" <= before <= "\u18af" and unicodedata.category(before)[0] == "L"  # Mongolian FVS


def _contextual(text: str, start: int, end: int, replacement: str) -> str:
    """The verdicts on the run of joiners, selectors and tags ``text[start:end]``."""
    out: list[str] = []
    before = text[start - 1] if start > 0 else ""
    i = start
    while i < end:
        ch = text[i]
        if _is_tag(ch):
            j = i + 1
            while j < end and _is_tag(text[j]) and text[j - 1] != "\U000e007f":  # CANCEL TAG ends a run
                j += 1
            run = text[i:j]
            kept = before == _BLACK_FLAG and _FLAG_TAGS.fullmatch(run) is not None
            out.append(run if kept else replacement * len(run))
            before = run[-1] if kept else ""
            i = j
            continue
        after = text[i + 1] if i + 1 < len(text) else ""
        kept = _keeps(ch, before, after)
        out.append(ch if kept else replacement)
        before = ch if kept else ""
        i += 1
    return "".join(out)


def _substitute(text: str, replacement: str, pos: int = 0) -> str:
    """Multi-line text from ``pos`` on with every unsafe character replaced (the slow path);
    the characters before ``pos`` are context only. Candidates are found with the fast
    superset and checked one by one (emoji are candidates too, and few)."""
    parts: list[str] = []
    last = pos
    changed = False
    for match in _CANDIDATE_MULTILINE.finditer(text, pos):
        start = match.start()
        if start < last or _IS_INVISIBLE.match(text, start) is None:
            continue  # inside a run already decided, or a visible character above U+FFFF
        end = start + 1
        if _IS_CONTEXTUAL.match(text, start) is None:
            verdict = replacement
        else:
            while end < len(text) and _IS_CONTEXTUAL.match(text, end) is not None:
                end += 1
            verdict = _contextual(text, start, end, replacement)
        if verdict != text[start:end]:
            parts.append(text[last:start])
            parts.append(verdict)
            last = end
            changed = True
        else:
            parts.append(text[last:end])
            last = end
    if not changed:
        return text[pos:] if pos else text
    parts.append(text[last:])
    return "".join(parts)


def sanitize(text: str, *, multiline: bool = False, replacement: str = REPLACEMENT) -> str:
    """Return ``text`` with every control, bidi, surrogate and invisible character replaced.

    Args:
        text: untrusted text (a file name, a metadata value, a log line, model output).
        multiline: keep ``"\\n"`` and ``"\\t"`` (a chat template, a block of log lines, model
            output), and the joiners, variation selectors and emoji tag sequences that
            writing systems and emoji need (see the module docstring); otherwise those are
            replaced too, so the result is one line with nothing invisible in it.
        replacement: what each unsafe character becomes; U+FFFD unless a caller needs a
            plain-ASCII form.

    Returns:
        The cleaned text, the same object when there was nothing to replace.
    """
    if text.isascii():  # only the controls can be unsafe
        if text.isprintable():  # no control at all (C speed; most stream pieces)
            return text
        if not multiline:
            return _ASCII_CONTROLS_ONE_LINE.sub(replacement, text)
        return text if _ASCII_CONTROLS.search(text) is None else _ASCII_CONTROLS.sub(replacement, text)
    if not multiline:
        if _CANDIDATE_ONE_LINE.search(text) is None:
            return text
        cleaned, count = _UNSAFE_ONE_LINE.subn(replacement, text)
        return cleaned if count else text
    if _CANDIDATE_MULTILINE.search(text) is None:
        return text
    return _substitute(text, replacement)


class StreamSanitizer:
    """:func:`sanitize` (multi-line) for text that arrives in pieces: streamed model output.

    A piece may end between an emoji and the ZWJ that joins it to the next one, or inside a
    flag's tag sequence; cleaning each piece alone would replace those. :meth:`feed` holds
    back a trailing run of joiners, selectors and tags (at most 16 characters) until the
    next piece shows what follows it, and remembers the last character it let through as the
    context of the next piece. The pieces it returns, joined, equal ``sanitize(whole,
    multiline=True)`` once :meth:`flush` has been called (a run longer than 16 is decided in
    parts, and replaced either way).

    Args:
        replacement: as for :func:`sanitize`.
    """

    def __init__(self, *, replacement: str = REPLACEMENT) -> None:
        self._replacement = replacement
        self._context = ""
        self._held = ""

    def feed(self, piece: str) -> str:
        """The cleaned text that ``piece`` completes (may be empty while a run is held)."""
        if not self._held and piece.isascii() and (piece.isprintable() or _ASCII_CONTROLS.search(piece) is None):
            if piece:
                self._context = piece[-1]
            return piece
        text = self._held + piece
        cut = len(text)
        while cut > 0 and len(text) - cut < _MAX_HELD and _IS_CONTEXTUAL.match(text, cut - 1) is not None:
            cut -= 1
        self._held = text[cut:]
        return self._emit(text[:cut])

    def flush(self) -> str:
        """The cleaned rest at the end of the stream (a held run, decided as the end of text)."""
        held, self._held = self._held, ""
        return self._emit(held)

    def _emit(self, text: str) -> str:
        if not text:
            return ""
        context = self._context
        self._context = text[-1]
        return _substitute(context + text, self._replacement, len(context))


def sanitize_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """Return a file name as one line of safe text for a message.

    Bytes that are not UTF-8 (kept by Python as lone surrogates, or given as ``bytes``) and
    control or invisible characters in the name each show as U+FFFD; the rest of the name is
    unchanged.

    Args:
        path: the path as the user or the file system gave it.
    """
    raw = os.fspath(path)
    text = os.fsdecode(raw) if isinstance(raw, bytes) else raw
    return sanitize(text)
