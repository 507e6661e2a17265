"""Benchmark: the sanitiser (``core/text.py``) on typical text, against the rule it replaced.

Until the invisible characters were added, ``sanitize`` was one regular-expression search
for controls, bidi characters, separators and surrogates (``_OLD`` below, kept here as the
baseline). The invisible characters add ranges above U+FFFF, which make ``re`` several times
slower per character; the sanitiser searches ASCII text for its controls alone and other text
for a superset without those ranges. This measures, per call (the best of 5 rounds, each the
best of 3 repeats, new and old interleaved so that load elsewhere hits both alike):

- a 1.1 KB ASCII model answer (prose and a code block), whole, multi-line;
- the same answer in 4-character pieces, as ``orin-console run`` cleans a stream (per piece);
  also through :class:`~orin_console.core.text.StreamSanitizer`;
- a model file name (one-line);
- the answer with accented letters (Latin-1, not ASCII), and with emoji (the slow path).

Usage::

    .venv/bin/python benchmarks/sanitize.py

The last line of output is JSON: ``{"benchmark": "sanitize", "ascii_answer_ns": ...,
"ascii_answer_old_ns": ..., ...}``; a ``*_ratio`` is new / old (below 1: faster now).
"""

from __future__ import annotations

import json
import re
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orin_console.core.text import StreamSanitizer, sanitize

_OLD_CLASS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_OLD = re.compile(f"[{_OLD_CLASS}]")
_OLD_ONE_LINE = re.compile(f"[{_OLD_CLASS}\t\n]")


def old_sanitize(text: str, *, multiline: bool = False, replacement: str = "\ufffd") -> str:
    """The sanitiser before the invisible characters (the baseline)."""
    pattern = _OLD if multiline else _OLD_ONE_LINE
    if pattern.search(text) is None:
        return text
    return pattern.sub(replacement, text)


ANSWER = ("Here is a short answer.\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
          "The function adds two numbers; call it as add(1, 2) and it returns 3.\n") * 8
PIECES = [ANSWER[i:i + 4] for i in range(0, len(ANSWER), 4)]
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LATIN = ANSWER.replace("short", "brève").replace("numbers", "nombres, déjà")
EMOJI = ANSWER.replace("answer.", "answer 👩\u200d💻 🙂.")


def best_ns(call: Callable[[], object], number: int) -> float:
    """Nanoseconds per call, the best of 3 repeats."""
    return min(timeit.repeat(call, number=number, repeat=3)) / number * 1e9


def main() -> int:
    figures: dict[str, object] = {"benchmark": "sanitize", "answer_bytes": len(ANSWER.encode()),
                                  "pieces": len(PIECES)}
    cases: list[tuple[str, Callable[..., str], Callable[[Callable[..., str]], object], int]] = [
        ("ascii_answer", sanitize, lambda f: f(ANSWER, multiline=True), 20000),
        ("ascii_pieces", sanitize, lambda f: [f(p, multiline=True) for p in PIECES], 300),
        ("file_name", sanitize, lambda f: f(FILE_NAME), 200000),
        ("latin_answer", sanitize, lambda f: f(LATIN, multiline=True), 20000),
        ("emoji_answer", sanitize, lambda f: f(EMOJI, multiline=True), 5000),
    ]
    for name, new, call, number in cases:
        # interleaved, so a burst of load elsewhere hits both sides alike; the best round of each
        rounds = [(best_ns(lambda new=new, call=call: call(new), number),  # type: ignore[misc]
                   best_ns(lambda call=call: call(old_sanitize), number))  # type: ignore[misc]
                  for _ in range(5)]
        now, before = min(r[0] for r in rounds), min(r[1] for r in rounds)
        figures[f"{name}_ns"] = round(now)
        figures[f"{name}_old_ns"] = round(before)
        figures[f"{name}_ratio"] = round(now / before, 2)
        print(f"{name:14} new {now:9.0f} ns   old {before:9.0f} ns   new/old {now / before:.2f}")

    def stream() -> None:
        cleaner = StreamSanitizer()
        for piece in PIECES:
            cleaner.feed(piece)
        cleaner.flush()

    figures["stream_pieces_ns"] = round(best_ns(stream, 300))
    print(f"{'stream_pieces':14} new {figures['stream_pieces_ns']:9} ns   (StreamSanitizer, {len(PIECES)} pieces)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
