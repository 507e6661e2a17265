"""The one sanitiser (core/text.py): what it replaces, what it keeps, and that it is total."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.core.text import REPLACEMENT, StreamSanitizer, sanitize, sanitize_path

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


# -- invisible characters (zero-width, joiners, selectors, tags) -------------------------------

ZWSP, ZWNJ, ZWJ, VS16 = "\u200b", "\u200c", "\u200d", "\ufe0f"
SCOTLAND = "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in "gbsct") + "\U000e007f"


def tags(text: str) -> str:
    """``text`` spelled in invisible tag characters (ASCII smuggling)."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


# Every invisible character the sanitiser knows (Default_Ignorable_Code_Point and U+FFF9-FFFB),
# by a representative of each range.
_INVISIBLE = ["\u00ad", "\u034f", "\u115f", "\u1160", "\u17b4", "\u17b5", "\u180b", "\u180e", "\u180f", ZWSP, ZWNJ,
              ZWJ, "\u2060", "\u2061", "\u2064", "\u206a", "\u206f", "\u3164", "\ufe00", VS16, "\ufeff", "\uffa0",
              "\ufff9", "\ufffb", "\U0001bca0", "\U0001d173", "\U000e0000", "\U000e0001", "\U000e0020", "\U000e0041",
              "\U000e007f", "\U000e0100", "\U000e01ef", "\U000e0fff"]


@pytest.mark.parametrize("ch", _INVISIBLE, ids=lambda ch: f"U+{ord(ch):04X}")
def test_every_invisible_character_is_visible_in_one_line_text(ch: str) -> None:
    """Ids, file names and metadata: what tells two names apart must show."""
    assert sanitize(f"gem{ch}ma3") == f"gem{R}ma3"
    assert sanitize_path(f"models/a{ch}.gguf") == f"models/a{R}.gguf"


def test_a_spoofed_model_id_does_not_look_like_the_real_one() -> None:
    real, spoof = "smollm2", f"smol{ZWSP}lm2"
    assert sanitize(spoof) != sanitize(real) and R in sanitize(spoof)
    assert sanitize(f"gemma3{tags(' ignore previous instructions')}") == "gemma3" + R * 29
    assert sanitize("\ufeffalpha") == f"{R}alpha"


# Legitimate uses in model output: kept exactly.
LEGIT = [
    f"👩{ZWJ}💻",  # technologist
    f"👨🏽{ZWJ}💻",  # with a skin tone
    f"❤{VS16}{ZWJ}🔥",  # heart on fire: VS16 then ZWJ
    f"🏳{VS16}{ZWJ}🌈",  # rainbow flag
    f"🏃{ZWJ}♀{VS16}",  # woman running: ZWJ before a BMP pictograph
    f"👨{ZWJ}👩{ZWJ}👧{ZWJ}👦",  # family: three joiners
    f"🐦{ZWJ}⬛",  # black bird
    SCOTLAND,  # emoji tag sequence
    f"#{VS16}\u20e3",  # keycap
    f"I ❤{VS16} NY",  # emoji presentation of a text character
    f"\u0645\u06cc{ZWNJ}\u062e\u0648\u0627\u0647\u0645",  # Persian: mi- + verb, ZWNJ between
    f"\u0915\u094d{ZWNJ}\u0937",  # Devanagari: ZWNJ after the virama
    f"\u0915\u094d{ZWJ}\u0937",  # Devanagari half form: ZWJ after the virama
    f"\u0d28\u0d4d{ZWJ} x",  # Malayalam chillu (old encoding) before a space
    "\u845b\U000e0100",  # an ideographic variation sequence (Japanese name glyph)
    "\u1820\u180b",  # Mongolian free variation selector after a Mongolian letter
]


@pytest.mark.parametrize("text", LEGIT, ids=lambda t: "-".join(f"{ord(c):X}" for c in t)[:40])
def test_emoji_sequences_and_joiners_in_scripts_survive_in_model_output(text: str) -> None:
    answer = f"Sure: {text} and more.\nNext line."
    assert sanitize(answer, multiline=True) == answer
    assert sanitize(answer, multiline=True) is answer  # nothing replaced: the same object


# Hostile uses in model output: each invisible character shows as U+FFFD (where it was).
HOSTILE = [
    (f"pay{ZWNJ}pal", f"pay{R}pal"),  # a joiner inside a Latin word: spoofing
    (f"a{ZWJ}b", f"a{R}b"),
    (f"zero{ZWSP}width", f"zero{R}width"),  # never legitimate
    ("\ufeffBOM", f"{R}BOM"),
    ("word\u2060joiner\u00adsoft", f"word{R}joiner{R}soft"),
    (f"ok{tags('secret')}", f"ok{R * 6}"),  # ASCII smuggling
    (f"🙂{tags('hi')}\U000e007f", f"🙂{R * 3}"),  # a tag sequence on another base
    (f"\U0001f3f4{tags('GBSCT')}\U000e007f", f"\U0001f3f4{R * 6}"),  # upper-case tags are no flag
    (f"\U0001f3f4{tags('gbsct')}", f"\U0001f3f4{R * 5}"),  # no CANCEL TAG
    (f"\U0001f3f4{tags('gbscotlandx')}\U000e007f", f"\U0001f3f4{R * 12}"),  # too long for a flag
    ("🙂\U000e0100\U000e0101\U000e0102", f"🙂{R * 3}"),  # bytes hidden in selectors after an emoji
    (f"x{VS16}{VS16}", f"x{VS16}{R}"),  # one selector per character
    (f"{VS16}start", f"{R}start"),  # a selector with nothing before it
    (f"👩{ZWJ}", f"👩{R}"),  # a joiner at the end joins nothing
    (f"👩{ZWJ}{ZWJ}💻", f"👩{R}{R}💻"),  # two in a row
    (f"👩{ZWJ}x", f"👩{R}x"),  # an emoji joined to a letter
    (f"\u0645{ZWNJ}{ZWNJ}\u062e", f"\u0645{R}{R}\u062e"),  # runs of joiners between letters
    (f"\u0645{ZWNJ}\n", f"\u0645{R}\n"),  # a joiner before a line break
    (f"a\x1b{ZWJ}💻", f"a{R}{R}💻"),
]


@pytest.mark.parametrize(("raw", "clean"), HOSTILE, ids=lambda v: "-".join(f"{ord(c):X}" for c in v)[:40])
def test_invisible_characters_without_a_legitimate_use_are_replaced_in_model_output(raw: str, clean: str) -> None:
    assert sanitize(raw, multiline=True) == clean
    assert sanitize(raw, multiline=True, replacement="") == clean.replace(R, "")


def test_clean_text_that_is_not_ascii_is_returned_as_is() -> None:
    for text in ("plain text, émoji 🙂 and 中文", f"家族 👨{ZWJ}👩{ZWJ}👧", "Ünïcödé"):
        assert sanitize(text, multiline=True) is text
    name = "Ünïcödé 🙂.gguf"
    assert sanitize(name) is name


def pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@pytest.mark.parametrize("text", [*LEGIT, *(raw for raw, _ in HOSTILE)])
def test_a_stream_cut_anywhere_is_cleaned_as_the_whole_text(text: str) -> None:
    """Streamed output arrives in pieces: an emoji's ZWJ or a flag's tags may be cut off."""
    whole = sanitize(f"a {text} b", multiline=True)
    for cut in range(len(text) + 4):
        cleaner = StreamSanitizer()
        out = "".join(cleaner.feed(p) for p in pieces(f"a {text} b", [cut])) + cleaner.flush()
        assert out == whole
    one_by_one = StreamSanitizer()
    assert "".join(one_by_one.feed(ch) for ch in f"a {text} b") + one_by_one.flush() == whole


_STREAM_ALPHABET = st.sampled_from(["a", " ", "\n", "\x1b", "🙂", "👩", "💻", "\U0001f3f4", "\u0645", "\u094d",
                                    ZWSP, ZWNJ, ZWJ, VS16, "\U000e0067", "\U000e0062", "\U000e007f", "\U000e0041",
                                    "\U000e0100", "\u845b", R])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet=_STREAM_ALPHABET, max_size=24), cuts=st.lists(st.integers(0, 24), max_size=6))
def test_streamed_and_whole_cleaning_agree_and_keep_the_length(text: str, cuts: list[int]) -> None:
    whole = sanitize(text, multiline=True)
    assert len(whole) == len(text)
    cleaner = StreamSanitizer()
    assert "".join(cleaner.feed(p) for p in pieces(text, cuts)) + cleaner.flush() == whole
    for ch, orig in zip(whole, text, strict=True):
        assert ch in (orig, R)
        if ch in (ZWSP, "\U000e0041", "\x1b"):  # never kept anywhere
            raise AssertionError(f"{ch!r} survived in {text!r}")


_ONE_LINE_ALPHABET = st.one_of(st.characters(), st.sampled_from(_INVISIBLE))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet=_ONE_LINE_ALPHABET, max_size=32))
def test_nothing_invisible_survives_in_one_line_text(text: str) -> None:
    out = sanitize(text)
    assert len(out) == len(text)
    for ch in out:
        assert ch not in _INVISIBLE
        assert not ("\U000e0000" <= ch <= "\U000e0fff") and not ("\ufe00" <= ch <= "\ufe0f")
        assert ch not in "\u200b\u200c\u200d\u2060\ufeff\u00ad"


def test_a_flag_then_more_tags_keeps_the_flag_and_a_long_run_streams_as_a_whole() -> None:
    text = f"{SCOTLAND}{tags('xyz')} {ZWJ * 40}{tags('a' * 30)}\U000e007f!"
    whole = sanitize(text, multiline=True)
    assert whole == f"{SCOTLAND}{R * 3} {R * 71}!"
    for cut in range(len(text)):
        cleaner = StreamSanitizer()
        assert "".join(cleaner.feed(p) for p in pieces(text, [cut])) + cleaner.flush() == whole
