"""An attached console rebuilds the catalog's file facts from the server's JSON
(``tui/backend/convert.py``): nothing is trusted, a field of the wrong type is a missing fact,
never an exception; texts are sanitised and bounded; and numbers Python's JSON reader accepts
but ``int()`` does not (``NaN``, ``Infinity``) are missing figures, not a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.core.file_facts import FileFacts as CoreFacts
from orin_console.tui.backend import convert
from orin_console.tui.widgets.catalog import FileFacts


def _one(facts: Any) -> FileFacts:
    return convert.file_facts([{"id": "m", "facts": facts}])["m"]


def test_good_facts_become_the_tables_facts() -> None:
    got = _one({"file_size": 98_000_000, "quantization": "Q4_1", "architecture": "llama", "n_params": 1,
                "context_length": 2048, "name": "x", "problem": None})
    assert got == FileFacts(98_000_000, "Q4_1", None)
    assert _one({"file_size": None, "quantization": None, "problem": "magic: bad"}) == FileFacts(None, None,
                                                                                                 "magic: bad")


@pytest.mark.parametrize("facts", [
    None, 7, "Q4", [1, 2], {"file_size": "98", "quantization": 4, "problem": ["x"]},
    {"file_size": True, "quantization": "", "problem": ""}, {"file_size": -5}, {"file_size": 1.5e9},
    {"file_size": float("nan")}, {"file_size": float("inf")}, {"quantization": {"a": 1}},
])
def test_facts_of_the_wrong_type_are_missing(facts: Any) -> None:
    assert _one(facts) == FileFacts()


def test_hostile_texts_are_sanitised_and_bounded() -> None:
    got = _one({"file_size": 10, "quantization": "[bold red]Q4\x1b[2J\u202e" + "K" * 5000,
                "problem": "bad\x00\n" + "p" * 100_000})
    assert got.size == 10
    assert got.quantization is not None and len(got.quantization) == convert.MAX_FACT_CHARS
    assert got.quantization.startswith("[bold red]Q4\ufffd[2J\ufffd") and got.quantization.endswith("…")
    assert got.problem is not None and len(got.problem) == convert.MAX_PROBLEM_CHARS
    assert got.problem.startswith("bad\ufffd\ufffd")


def test_models_without_an_id_or_not_objects_are_skipped() -> None:
    assert convert.file_facts([{"facts": {"file_size": 1}}, 3, None, {"id": 5}, {"id": "ok"}]) == {"ok": FileFacts()}
    assert convert.file_facts({"models": []}) == {} and convert.file_facts(None) == {}


def test_the_in_process_facts_go_through_the_same_rules() -> None:
    core = CoreFacts(file_size=10, quantization="Q8_0", architecture="llama", n_params=3, context_length=64)
    assert convert.facts_from_core(core) == FileFacts(10, "Q8_0", None)
    assert convert.facts_from_core(CoreFacts(problem="file: cannot open")) == FileFacts(None, None,
                                                                                         "file: cannot open")


def test_non_finite_numbers_in_a_status_or_a_sample_are_missing_not_a_crash() -> None:
    raw = json.loads('{"model_id": "m", "state": "ready", "predicted_bytes": Infinity, "measured_bytes": NaN, '
                     '"progress": -Infinity, "queued": NaN}')
    status = convert.model_status(raw)
    assert status.predicted_bytes is None and status.measured_bytes is None and status.progress is None
    assert status.queued == 0
    sample = convert.sample({"mem_total": float("inf"), "gpu_process_bytes": {"²": 1, "1" * 5000: 2, "42": 7}})
    assert sample.mem_total is None and sample.gpu_process_bytes == {42: 7}


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3),
                    max_leaves=10)
KEYS = st.sampled_from(["file_size", "quantization", "problem", "architecture"]) | st.text(max_size=6)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(facts=st.dictionaries(KEYS, JSON, max_size=5) | JSON)
def test_any_json_gives_well_typed_facts(facts: Any) -> None:
    got = _one(facts)
    assert got.size is None or (isinstance(got.size, int) and got.size >= 0)
    for text in (got.quantization, got.problem):
        assert text is None or (isinstance(text, str) and not any(ord(c) < 32 for c in text))
