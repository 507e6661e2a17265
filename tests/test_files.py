"""core/files.py: bounded regular-file reads, writes through symlinks, and the edit lock."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orin_console.core.errors import CatalogError, OrinError, SettingsError
from orin_console.core.files import (
    atomic_write_text,
    exclusive_lock,
    lock_path,
    read_regular_file,
    read_text_file,
)


def test_reads_a_regular_file_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, limit_bytes=100, what="catalog") == b"x" * 100
    with pytest.raises(CatalogError, match=r"larger than the limit of 0\.0 MB \(99 bytes\) for a catalog"):
        read_regular_file(path, limit_bytes=99, what="catalog", error=CatalogError)


def test_a_file_whose_size_lies_is_still_cut_at_the_limit() -> None:
    """/proc files say 0 bytes: the read itself stops at limit + 1 and refuses."""
    with pytest.raises(OrinError, match="larger than the limit"):
        read_regular_file("/proc/self/status", limit_bytes=10, what="state file")


def test_dev_zero_is_refused_before_reading() -> None:
    with pytest.raises(SettingsError, match=r"^/dev/zero: the config file is a character device"):
        read_regular_file("/dev/zero", limit_bytes=1 << 20, what="config file", error=SettingsError)


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "models.toml"
    os.mkfifo(fifo)
    with pytest.raises(CatalogError, match=r"is a FIFO \(named pipe\), not a regular file"):
        read_text_file(fifo, limit_bytes=1 << 20, what="catalog", error=CatalogError)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OrinError, match="is a folder, not a regular file"):
        read_regular_file(tmp_path, limit_bytes=10, what="catalog")


def test_a_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "absent", limit_bytes=10, what="catalog")


def test_an_unreadable_file_is_an_orin_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text("x")
    path.chmod(0)
    if os.access(path, os.R_OK):  # running as root: permissions do not apply
        path.chmod(0o644)
        path = tmp_path / "loop"
        path.symlink_to(path)  # ELOOP is an OSError for root too
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        read_regular_file(path, limit_bytes=10, what="catalog", error=CatalogError)


def test_text_must_be_utf8_and_the_error_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"ok = 1\nname = \"\xff\"\n")
    with pytest.raises(SettingsError, match=r"not valid UTF-8 \(byte offset 15: b'\\xff\"\\n'\)"):
        read_text_file(path, limit_bytes=100, what="config file", error=SettingsError)
    path.write_text("name = \"é\"\n", encoding="utf-8")
    assert read_text_file(path, limit_bytes=100, what="config file") == "name = \"é\"\n"


def test_a_hostile_file_name_is_sanitised_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "evil\x1b[2J\u202e.toml"
    os.mkfifo(path)
    with pytest.raises(OrinError) as excinfo:
        read_regular_file(path, limit_bytes=10, what="catalog")
    message = str(excinfo.value)
    assert "\x1b" not in message and "\u202e" not in message
    assert "evil\ufffd[2J\ufffd.toml" in message


def test_writing_through_a_symlink_changes_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "models.toml"
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "models.toml"
    link.symlink_to(Path("real") / "models.toml")  # relative, as users make them
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "models.toml")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in real_dir.iterdir()) == ["models.toml"]  # temp file beside the target, gone


def test_writing_through_a_dangling_symlink_creates_the_target(tmp_path: Path) -> None:
    link = tmp_path / "models.toml"
    link.symlink_to(tmp_path / "elsewhere.toml")
    atomic_write_text(link, "created\n")
    assert link.is_symlink() and (tmp_path / "elsewhere.toml").read_text() == "created\n"


def test_the_lock_excludes_a_second_holder_and_is_released(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    with exclusive_lock(path, what="catalog") as lock:
        assert lock == tmp_path / ".models.toml.lock" and lock.exists()
        with pytest.raises(CatalogError, match=r"another process has been editing the catalog for over 0 s"), \
                exclusive_lock(path, what="catalog", timeout_s=0, error=CatalogError):
            pass
    with exclusive_lock(path, what="catalog", timeout_s=0):
        pass


def test_two_links_to_one_file_share_one_lock(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "models.toml"
    target.parent.mkdir()
    target.write_text("")
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.symlink_to(target)
    b.symlink_to(target)
    assert lock_path(a) == lock_path(b) == target.parent / ".models.toml.lock"
    with exclusive_lock(a, what="catalog"), pytest.raises(OrinError, match="another process"), \
            exclusive_lock(b, what="catalog", timeout_s=0):
        pass
