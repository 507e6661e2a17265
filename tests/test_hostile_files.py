"""Hostile file names and files: where a model, the catalog or the config file is expected,
give names with a newline, a bidi override, bytes that are not UTF-8, 300 characters, and
things that are not files (a folder, a FIFO, /dev/zero, a symlink loop). Also every broken
file of the crafted GGUF corpus through ``models add``. One line, exit 2, catalog unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hostile_support import CATALOG, assert_refused, cli, snapshot
from test_gguf_corpus import CASES, Case

from orin_console.core.catalog.add import discover
from orin_console.core.catalog.store import parse_catalog
from orin_console.core.errors import CatalogError
from orin_console.core.gguf import DEFAULT_LIMITS

ODD_NAMES = {
    "newline": "evil\nname.gguf",
    "bidi": "evil\u202egguf.exe.gguf",
    "escape": "evil\x1b[2Jname.gguf",
    "long": "x" * 250 + ".gguf",
    "toml-syntax": 'q"uote\\back]] # [[models]]\t\u00e9.gguf',
    "leading-space": " spaced .gguf",
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "models.toml").write_text(CATALOG)
    return tmp_path


@pytest.mark.parametrize("kind", sorted(ODD_NAMES))
def test_an_odd_but_valid_model_file_name_is_added_and_shown_safely(
        home: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    """A valid GGUF under a hostile name is accepted (the name is data), and every message
    about it is one safe line."""
    path = home / ODD_NAMES[kind]
    shutil.copyfile(tiny_model_path, path)
    catalog = home / "models.toml"
    result = cli(capsys, "--catalog", str(catalog), "models", "add", str(path))
    assert result.code == 0, result.err
    assert result.out.count("added ") == 1 and result.err == ""
    for bad in ("\x1b", "\u202e", "\udcff"):
        assert bad not in result.out
    parsed = parse_catalog(catalog.read_text(), catalog)
    assert [parsed.model_path(e) for e in parsed if e.id != "alpha"] == [path]  # the name round-trips
    result = cli(capsys, "--catalog", str(catalog), "models", "list")
    assert result.code == 0 and "\x1b" not in result.out and "\u202e" not in result.out
    result = cli(capsys, "--catalog", str(catalog), "models", "add", str(path))
    assert_refused(result, "already in the catalog")


def test_a_file_name_that_is_not_utf8_is_refused_naming_the_fix(home: Path, tiny_model_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """TOML is UTF-8: the catalog cannot hold such a path, so the file is refused, not mangled."""
    path = home / os.fsdecode(b"evil\xff\xfe.gguf")
    shutil.copyfile(tiny_model_path, path)
    catalog = home / "models.toml"
    before = snapshot(catalog)
    line = assert_refused(cli(capsys, "--catalog", str(catalog), "models", "add", str(path)),
                          "not valid UTF-8", "rename the file")
    assert "evil\ufffd\ufffd.gguf" in line
    assert snapshot(catalog) == before


def _special(home: Path, kind: str) -> Path:
    if kind == "folder-empty":
        (home / "empty").mkdir()
        return home / "empty"
    if kind == "fifo":
        os.mkfifo(home / "m.gguf")
        return home / "m.gguf"
    if kind == "symlink-loop":
        (home / "loop.gguf").symlink_to(home / "loop.gguf")
        return home / "loop.gguf"
    if kind == "dangling-symlink":
        (home / "gone.gguf").symlink_to(home / "nowhere.gguf")
        return home / "gone.gguf"
    if kind == "name-too-long":
        return home / ("x" * 300 + ".gguf")
    if kind == "missing":
        return home / "missing\u202e.gguf"
    if kind == "empty-file":
        (home / "e.gguf").write_bytes(b"")
        return home / "e.gguf"
    if kind == "not-gguf":
        (home / "t.gguf").write_text("hello")
        return home / "t.gguf"
    return Path("/dev/zero")


SPECIAL = {
    "folder-empty": ("no .gguf files in this folder",),
    "fifo": ("not a regular file",),
    "symlink-loop": ("Too many levels of symbolic links",),
    "dangling-symlink": ("no such file or folder",),
    "name-too-long": ("name too long",),
    "missing": ("no such file or folder", "missing\ufffd.gguf"),
    "empty-file": ("the file is empty",),
    "not-gguf": ("not a GGUF file",),
    "dev-zero": ("not a regular file",),
}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
@pytest.mark.parametrize("action", ["add", "inspect"])
def test_things_that_are_not_model_files_are_refused(home: Path, capsys: pytest.CaptureFixture[str],
                                                     kind: str, action: str) -> None:
    path = _special(home, kind)
    catalog = home / "models.toml"
    before = snapshot(catalog)
    result = cli(capsys, "--catalog", str(catalog), "models", action, str(path))
    needles = SPECIAL[kind]
    if action == "inspect" and kind == "folder-empty":
        needles = ("not a regular file (a folder)",)
    if action == "inspect" and kind in ("symlink-loop", "dangling-symlink", "name-too-long", "missing"):
        needles = ("cannot open",)
    assert_refused(result, *needles)
    assert snapshot(catalog) == before


@pytest.mark.parametrize("kind", ["fifo", "symlink-loop", "dev-zero", "folder-empty", "name-too-long"])
@pytest.mark.parametrize("option", ["--catalog", "--config"])
def test_things_that_are_not_a_catalog_or_config_file_are_refused(home: Path, capsys: pytest.CaptureFixture[str],
                                                                  kind: str, option: str) -> None:
    path = _special(home, kind)
    result = cli(capsys, option, str(path), "models", "list")
    assert_refused(result)


def test_a_catalog_under_an_odd_name_works(home: Path, tiny_model_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copyfile(tiny_model_path, home / "m.gguf")
    catalog = home / "cat\nalog\u202e.toml"
    result = cli(capsys, "--catalog", str(catalog), "models", "add", str(home / "m.gguf"))
    assert result.code == 0, result.err
    assert "\u202e" not in result.out and "cat\ufffdalog\ufffd.toml" not in result.err


BROKEN = [case for case in CASES if case.limits == DEFAULT_LIMITS]


@pytest.mark.parametrize("case", BROKEN, ids=[case.id for case in BROKEN])
@pytest.mark.parametrize("action", ["add", "inspect"])
def test_models_add_and_inspect_refuse_every_crafted_file_cleanly(
        home: Path, capsys: pytest.CaptureFixture[str], case: Case, action: str) -> None:
    path = home / "crafted.gguf"
    path.write_bytes(case.build())
    catalog = home / "models.toml"
    before = snapshot(catalog)
    result = cli(capsys, "--catalog", str(catalog), "models", action, str(path))
    assert_refused(result, "invalid GGUF", case.field)
    if action == "add":
        assert "not added" in result.err
    assert snapshot(catalog) == before


@pytest.mark.parametrize(("catalog", "needles"), [
    ("/dev/null/models.toml", ("/dev/null: cannot create the catalog's folder", "File exists")),
    ("{h}/file/models.toml", ("cannot create the catalog's folder",)),
], ids=["under-dev-null", "under-a-file"])
def test_a_catalog_in_a_folder_that_cannot_be_made(home: Path, tiny_model_path: Path,
                                                    capsys: pytest.CaptureFixture[str], catalog: str,
                                                    needles: tuple[str, ...]) -> None:
    (home / "file").write_text("x")
    shutil.copyfile(tiny_model_path, home / "m.gguf")
    assert_refused(cli(capsys, "--catalog", catalog.format(h=home), "models", "add", str(home / "m.gguf")), *needles)


@pytest.mark.parametrize("kind", ["name-too-long", "symlink-loop", "fifo", "missing", "dev-zero"])
def test_discover_raises_only_catalog_errors(home: Path, kind: str) -> None:
    """The core's own check (the TUI and the API call it directly, without the CLI's guard):
    an OSError such as ENAMETOOLONG must not escape as itself."""
    with pytest.raises(CatalogError):
        discover(_special(home, kind))
