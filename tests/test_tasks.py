"""Task detection: each task, the reasons, determinism, chats, and the labelled set's accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from orin_console.core.catalog.store import TASKS
from orin_console.core.engine.tasks import _PHRASES, _ROLES, DETECTED_TASKS, detect_chat_task, detect_task

LABELLED = Path(__file__).parent / "data" / "task_prompts.jsonl"

# Prompts written for these tests (not taken from the labelled set).
EXAMPLES = {
    "chat": [
        "hello, how's your day going?",
        "What's the difference between a set and a frozenset in Python?",
        "Why do leaves change colour in autumn?",
        "Give me some advice for my first week as a team lead.",
        "Write a sonnet about the sea at night.",
    ],
    "code": [
        "Write a Python function that returns the n-th Fibonacci number.",
        "```js\nconst add = (a, b) => a + b;\nconsole.log(add(1));\n```\nwhy does this print NaN?",
        "Implement a ring buffer in Rust with push and pop.",
        "Fix this:\n\nint main(void) {\n    char *s = NULL;\n    printf(\"%s\\n\", s);\n    return 0;\n}",
        "Give me a SQL query that lists orders without a matching customer.",
    ],
    "classification": [
        "Classify this review as positive or negative: 'Arrived broken, no reply from support.'",
        "Is this message spam or not spam? 'WIN a free phone, reply YES now'",
        "Which category fits this ticket: billing, shipping, or returns? 'Where is my parcel?'",
        "What's the sentiment of 'honestly the best concert of my life'?",
    ],
    "summarisation": [
        ("Summarise this in two sentences: 'The committee met for three hours and agreed to delay "
         "the vote until the budget figures are audited by an external firm next month.'"),
        "tl;dr of the following:\n\n" + "The pilot ran for six weeks across three depots. " * 8,
        ("Give me the key points of this memo:\n\nStarting Monday, all visitors must sign in at "
         "reception. Badges will be issued for the day and must be returned on exit. Parking is "
         "limited to the east lot while the west lot is resurfaced."),
    ],
    "extraction": [
        "Extract every email address from: 'write to ana@example.org or ops@example.com'",
        "List all the dates mentioned in this note: 'Kick-off 3 June, review 17 June, launch 1 July.'",
        "Return a JSON object with name and city from: 'I am Kofi and I live in Accra.'",
        "Pull out the invoice number and total from this text: 'Invoice 8841, total due 312.50 EUR.'",
    ],
    "completion": [
        "Continue this story: The dragon had slept under the library for a thousand years, until",
        "Complete the sentence: The best thing about Sunday mornings is",
        "The old sailor lit his pipe, looked out at the grey water and",
    ],
}


@pytest.mark.parametrize(("task", "prompt"), [(t, p) for t, ps in EXAMPLES.items() for p in ps])
def test_detects_each_task_with_reasons(task: str, prompt: str) -> None:
    guess = detect_task(prompt)
    assert guess.task == task, guess
    assert guess.reasons and all(isinstance(r, str) and r for r in guess.reasons)
    assert 0.0 < guess.confidence <= 1.0
    assert set(guess.scores) == set(DETECTED_TASKS)
    assert guess.scores[task] == max(guess.scores.values())


def test_code_reasons_name_the_evidence() -> None:
    guess = detect_task("Why does this fail?\n```python\ndef f(x):\n    return x[0]\nf([])\n```\nI'm on Python 3.12.")
    assert guess.task == "code"
    assert guess.reasons[0] == "fenced block"
    assert "`def`" in guess.reasons
    assert "mentions Python" in guess.reasons
    assert guess.explanation.startswith("code: fenced block, ")


def test_questions_about_code_concepts_are_chat() -> None:
    for prompt in ("What is the difference between a list and a tuple in Python?",
                   "When should I use an interface instead of an abstract class in Java?",
                   "Is Rust harder to learn than Go?"):
        guess = detect_task(prompt)
        assert guess.task == "chat", (prompt, guess)
        assert {"a question about a concept", "a question"} & set(guess.reasons)


def test_chat_is_the_default_with_a_reason() -> None:
    for text in ("", "   ", "ok", "banana"):
        guess = detect_task(text)
        assert guess.task == "chat"
        assert guess.reasons == ("no task-specific cues (chat is the default)",)


def test_completion_needs_a_continuation_not_just_the_word_complete() -> None:
    assert detect_task("Complete this function so it sums the list:\n\ndef total(xs):\n    pass").task == "code"
    assert detect_task("Continue the text: 'Rain again. The street lamps came on at four and'").task == "completion"
    assert detect_task("Is the project complete yet?").task == "chat"


def test_summary_request_with_a_pasted_passage_beats_the_question_form() -> None:
    passage = ("The council approved the new cycling plan after a long debate. Shops worried about "
               "parking, while schools welcomed safer routes. Work starts in spring.\n") * 3
    guess = detect_task(f"What is this article saying, in one sentence?\n\n{passage}")
    assert guess.task == "summarisation"
    assert "long passage" in guess.reasons


def test_only_the_head_and_tail_of_a_long_prompt_are_read() -> None:
    filler = "lorem ipsum dolor sit amet " * 2000  # ~54 KB, with a cue buried in the middle
    middle = filler[:27000] + " classify " + filler[27000:]
    assert detect_task("Summarise this:\n" + middle).task == "summarisation"
    assert detect_task(middle + "\nPlease extract all the Latin words.").task == "extraction"
    huge = "Summarise this:\n" + filler * 100  # ~5 MB
    start = time.perf_counter()
    assert detect_task(huge).task == "summarisation"
    assert time.perf_counter() - start < 0.05


def test_detection_is_deterministic_within_and_across_processes() -> None:
    prompt = "Refactor this:\n\nfunction f(a){ return a.map(x => x*2) }\nconst y = f([1,2]);"
    assert len({repr(detect_task(prompt)) for _ in range(20)}) == 1
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from orin_console.core.engine.tasks import detect_task;"
            f"print(repr(detect_task({prompt!r})))")
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent.parent)],
                             capture_output=True, text=True, check=True, env=env)
        outputs.add(run.stdout)
    assert outputs == {repr(detect_task(prompt)) + "\n"}


def test_detection_is_fast_on_2kb_prompts() -> None:
    prompt = ("Summarise the notes below.\n\n" + "Decision: ship on Monday; owner Ana; risk low. " * 60)[:2048]
    detect_task(prompt)
    start = time.perf_counter()
    for _ in range(200):
        detect_task(prompt)
    mean_us = (time.perf_counter() - start) / 200 * 1e6
    assert mean_us < 1000, f"{mean_us:.0f} µs per detection (budget: tens of µs)"


def test_every_rule_phrase_can_match_as_a_whole() -> None:
    unreachable = [p for p in _ROLES if not _PHRASES.fullmatch(p)]
    assert unreachable == []


def test_chat_uses_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a Python function that parses ISO dates."},
        {"role": "assistant", "content": "```python\ndef parse(s):\n    ...\n```"},
        {"role": "user", "content": "Thanks! Now, what's a good name for my cat?"},
    ]
    assert detect_chat_task(messages).task == "chat"
    assert detect_chat_task(messages[:3]).task == "code"


def test_chat_accepts_content_parts_and_no_user_message() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Summarise this: " + "word " * 50}]}]
    assert detect_chat_task(parts).task == "summarisation"
    guess = detect_chat_task([{"role": "system", "content": "Be brief."}])
    assert guess.task == "chat" and "no user message" in guess.reasons[0]


def test_system_prompt_hints_a_terse_user_message() -> None:
    messages = [
        {"role": "system", "content": "You are a sentiment classifier. Classify each message."},
        {"role": "user", "content": "the battery died after one day"},
    ]
    guess = detect_chat_task(messages)
    assert guess.task == "classification"
    assert any(r.startswith("system prompt: ") for r in guess.reasons)
    assert detect_task("the battery died after one day").task == "chat"


# --- the labelled set -------------------------------------------------------------------------


def _labelled() -> list[dict[str, str]]:
    with LABELLED.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_labelled_set_is_well_formed() -> None:
    rows = _labelled()
    assert len(rows) >= 300
    assert all(set(r) == {"prompt", "task", "split"} for r in rows)
    assert all(r["task"] in TASKS and r["split"] in ("dev", "held_out") for r in rows)
    assert len({r["prompt"] for r in rows}) == len(rows), "duplicate prompts"
    held_out = Counter(r["task"] for r in rows if r["split"] == "held_out")
    assert set(held_out) == set(DETECTED_TASKS) and min(held_out.values()) >= 10
    lengths = [len(r["prompt"]) for r in rows]
    assert min(lengths) < 40 and sum(n > 1000 for n in lengths) >= 10


def _accuracy(rows: list[dict[str, str]]) -> tuple[float, str]:
    seen: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for row in rows:
        seen[row["task"]] += 1
        right[row["task"]] += detect_task(row["prompt"]).task == row["task"]
    table = ", ".join(f"{t} {right[t]}/{seen[t]}" for t in DETECTED_TASKS if seen[t])
    return sum(right.values()) / len(rows), table


def test_labelled_set_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _labelled()
    overall, table = _accuracy(rows)
    dev, dev_table = _accuracy([r for r in rows if r["split"] == "dev"])
    held, held_table = _accuracy([r for r in rows if r["split"] == "held_out"])
    report = (f"overall {overall:.1%} ({table})\ndev {dev:.1%} ({dev_table})\n"
              f"held-out {held:.1%} ({held_table})")
    with capsys.disabled():
        print("\n" + report)
    assert overall >= 0.90, report
    # Regression guards at the measured level (docs/selection.md has the figures).
    assert dev >= 0.96, report
    assert held >= 0.84, report
