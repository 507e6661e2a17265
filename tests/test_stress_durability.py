"""Catalog durability (issue 11, part 4): kill -9 during saves, a full disk, concurrent editors.

The short versions of :mod:`stress.durability`'s checks, plus the save primitives they rely on.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from orin_console.cli.main import main
from orin_console.core.catalog.store import CatalogStore
from orin_console.core.errors import OrinError
from orin_console.core.files import FileSaveError, atomic_write_text, exclusive_lock, remove_stale_temp_files
from stress.durability import concurrent_editors, kill_during_saves
from stress.durability_support import INJECTED, enospc_check, write_model


def _enospc(_fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_save_on_a_full_disk_names_the_problem_and_the_fix_and_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "models.toml"
    target.write_text("old\n")
    with mock.patch("os.fsync", _enospc), pytest.raises(FileSaveError) as caught:
        atomic_write_text(target, "new\n", what="catalog")
    message = str(caught.value)
    assert "No space left on device (ENOSPC)" in message and "free some space" in message
    assert "catalog on disk is unchanged" in message and str(tmp_path) in message
    assert isinstance(caught.value, OrinError) and isinstance(caught.value, OSError)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.toml"]  # no temp file left


def test_models_add_on_a_full_disk_exits_2_with_one_line_and_keeps_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "models.toml"
    first, second = write_model(tmp_path / "one.gguf", seed=1), write_model(tmp_path / "two.gguf", seed=2)
    assert main(["--catalog", str(catalog), "models", "add", str(first)]) == 0
    before = catalog.read_bytes()
    capsys.readouterr()
    with mock.patch("os.fsync", _enospc):
        status = main(["--catalog", str(catalog), "models", "add", str(second)])
    err = capsys.readouterr().err
    assert status == 2
    assert "No space left on device" in err and "free some space" in err
    assert "internal error" not in err and "Traceback" not in err
    assert catalog.read_bytes() == before
    assert [e.id for e in CatalogStore(catalog).load()] == ["one"]


def test_a_locked_save_removes_the_temp_files_killed_saves_left(tmp_path: Path) -> None:
    target = tmp_path / "models.toml"
    target.write_text("old\n")
    orphans = [tmp_path / f".models.toml.{name}.tmp" for name in ("abcd_123", "zz99yy88")]
    for orphan in orphans:
        orphan.write_text("half a sa")
    unrelated = [tmp_path / ".models.toml.lock", tmp_path / ".other.toml.abcd_123.tmp", tmp_path / "x.tmp"]
    for other in unrelated:
        other.write_text("")
    atomic_write_text(target, "plain\n")  # without the lock nothing is swept
    assert all(o.exists() for o in orphans)
    with exclusive_lock(target, what="catalog"):
        atomic_write_text(target, "new\n", locked=True)
    assert target.read_text() == "new\n"
    assert not any(o.exists() for o in orphans)
    assert all(o.exists() for o in unrelated)
    assert remove_stale_temp_files(target) == 0


def test_kill_9_during_saves_always_leaves_the_old_or_the_new_catalog(tmp_path: Path) -> None:
    figures = kill_during_saves(tmp_path, 25, random.Random(5))
    assert figures["problems"] == [] and figures["bad_reads"] == 0
    assert figures["saves"] >= 25 and figures["kills"] >= 2 and figures["checks"] > figures["kills"]
    assert figures["temp_files_left"] <= 1
    assert figures["ok"]


def test_a_full_file_system_refuses_the_add_on_every_face_and_loses_nothing(tmp_path: Path) -> None:
    figures = enospc_check(tmp_path)
    if figures["method"] == INJECTED:  # only when neither real way was allowed here, and it says why
        assert [t.split(":")[0] for t in figures["tried"]] == ["tmpfs", "userns"], figures["tried"]
    else:
        assert figures["method"].startswith("tmpfs 64 KiB") and figures["filled_bytes"] > 0
    assert figures["cli"]["exit"] == 2 and figures["cli"]["ok"], figures["cli"]
    assert figures["tui_add_path"]["raised"] == "DiskFull" and figures["tui_add_path"]["ok"]  # a FileSaveError
    assert figures["api"]["status"] == 507 and figures["api"]["ok"], figures["api"]
    assert figures["catalog_unchanged"] and figures["temp_files_left"] == 0
    assert figures["after_freeing"]["entries"] == ["full-1", "full-2"] and figures["nothing_lost"]
    assert figures["ok"]


def test_the_injected_fallback_checks_the_same_things(tmp_path: Path) -> None:
    figures = enospc_check(tmp_path, method="injected")
    assert figures["method"] == INJECTED
    assert figures["ok"], figures


def test_the_tui_the_api_and_the_cli_adding_at_once_lose_nothing(tmp_path: Path) -> None:
    figures = concurrent_editors(tmp_path, 2, random.Random(3))
    assert figures["failed"] == {} and figures["missing"] == []
    assert figures["entries_present"] == figures["entries_expected"] == 2 + 3 * 2
    assert figures["server_missing"] == []
    assert figures["ok"]


def test_a_lock_file_that_cannot_be_created_on_a_full_disk_says_so(tmp_path: Path) -> None:
    real_open = os.open

    def no_inode_left(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if str(path).endswith(".lock"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode, **kw)

    store = CatalogStore(tmp_path / "models.toml")
    with mock.patch("os.open", no_inode_left), pytest.raises(OrinError) as caught:
        store.add([])
    message = str(caught.value)
    assert "No space left on device" in message and "free some space" in message
    assert "permissions" not in message and "catalog is unchanged" in message
