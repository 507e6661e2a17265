"""Issue 11, part 3: the quick run of ``stress.disconnects``: streams on every streaming route
(seed SSE and OpenAI) dropped at random points, by close or reset; every runner must be free
again (not busy, nothing queued) and answer the next request. Release times are the script's
figure (goal p99 <= 100 ms), not asserted here."""

from __future__ import annotations

from pathlib import Path

from stress import disconnects
from stress.common import STREAM_ROUTES


def test_every_dropped_stream_frees_its_runner(tmp_path: Path) -> None:
    figures = disconnects.run(True, 11, folder=tmp_path)
    assert figures["streams"] == 10
    assert figures["not_dropped"] == []  # each stream was cut mid-way, none ran to its end first
    assert figures["not_released"] == 0, figures["not_released_examples"]
    assert figures["released"] == figures["streams"]
    assert figures["long_prompt_streams"] == 2  # dropped during the prompt's evaluation, released too
    assert set(figures["release_ms_by_route"]) == set(STREAM_ROUTES)
    assert all(code == 200 for code in figures["answers_after"].values()), figures["answers_after"]
