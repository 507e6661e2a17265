"""The state files (usage.json, measurements.json) are read bounded: a FIFO, a device or a
huge file in their place is ignored with a warning, never a hang or a memory blow-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orin_console.core.files import STATE_FILE_LIMIT
from orin_console.core.memory.measurements import Corrections
from orin_console.core.placement.usage import UsageTracker


def test_measurements_in_a_fifo_are_ignored_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "measurements.json"
    os.mkfifo(path)
    corrections = Corrections(path)  # would block forever on a plain open()
    assert corrections.measurements() == []
    assert corrections.problem is not None
    assert "is a FIFO (named pipe), not a regular file; " in corrections.problem
    assert corrections.problem.endswith("stored measurements ignored")


def test_oversized_measurements_are_ignored_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "measurements.json"
    with path.open("wb") as fh:  # sparse: costs no disk, would cost 5 MB of memory to read
        fh.truncate(STATE_FILE_LIMIT + 1)
    corrections = Corrections(path)
    assert corrections.measurements() == []
    assert corrections.problem is not None and "larger than the limit of 4.0 MB" in corrections.problem


def test_measurements_that_are_a_device_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "measurements.json"
    path.symlink_to("/dev/zero")
    corrections = Corrections(path)
    assert corrections.problem is not None and "is a character device" in corrections.problem


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_usage_file_that_is_not_a_small_regular_file_starts_afresh(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        with path.open("wb") as fh:
            fh.truncate(STATE_FILE_LIMIT + 1)
    tracker = UsageTracker(path=path)
    assert tracker.snapshot() == {}
    assert "ignoring the usage file" in caplog.text


def test_a_good_usage_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    first = UsageTracker(path=path, clock=lambda: 1000.0)
    first.record("alpha", tokens=10)
    first.save()
    again = UsageTracker(path=path, clock=lambda: 1000.0)
    assert list(again.snapshot()) == ["alpha"]
