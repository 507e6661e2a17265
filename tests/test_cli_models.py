"""``orin-console models …`` end to end: exit codes, one-line errors, atomic catalog writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orin_console.cli.main import main
from orin_console.core.catalog.store import parse_catalog


@pytest.fixture
def workdir(tmp_path: Path, tiny_model_path: Path) -> Path:
    """A catalog folder with one valid model file and one crafted (invalid) one."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_model_path, folder / "Tiny-Model.F32.gguf")
    (folder / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_inspect_remove(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = workdir / "models.toml"
    code, out, err = run(capsys, "--catalog", str(catalog), "models", "add",
                         str(workdir / "models" / "Tiny-Model.F32.gguf"), "--tasks", "chat,code", "--tier", "ram")
    assert code == 0, err
    assert "added tiny-model.f32" in out
    entry = parse_catalog(catalog.read_text(), catalog).get("tiny-model.f32")
    assert entry.path == "models/Tiny-Model.F32.gguf" and entry.tasks == ("chat", "code") and entry.tier == "ram"

    code, out, _ = run(capsys, "--catalog", str(catalog), "models", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["architecture"] == "llama" and rows[0]["quantization"] == "F32"
    assert rows[0]["problem"] is None and rows[0]["size"] > 0

    code, out, _ = run(capsys, "--catalog", str(catalog), "models", "list")
    assert code == 0 and "tiny-model.f32" in out and "llama" in out

    code, out, _ = run(capsys, "models", "inspect", str(workdir / "models" / "Tiny-Model.F32.gguf"), "--json")
    facts = json.loads(out)
    assert code == 0 and facts["summary"]["architecture"] == "llama"
    assert facts["metadata"]["general.architecture"] == "llama"

    code, out, _ = run(capsys, "--catalog", str(catalog), "models", "remove", "tiny-model.f32")
    assert code == 0 and "was not deleted" in out
    assert len(parse_catalog(catalog.read_text(), catalog)) == 0
    assert (workdir / "models" / "Tiny-Model.F32.gguf").exists()


def test_add_folder_adds_valid_and_reports_refused(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = workdir / "models.toml"
    code, out, err = run(capsys, "--catalog", str(catalog), "models", "add", str(workdir / "models"))
    assert code == 2
    assert "added tiny-model.f32" in out
    assert "refused" in err and "broken.gguf" in err and "invalid GGUF" in err
    assert [e.id for e in parse_catalog(catalog.read_text(), catalog)] == ["tiny-model.f32"]
    # Adding the same file again is refused as a duplicate; the catalog is unchanged.
    before = catalog.read_text()
    tiny = workdir / "models" / "Tiny-Model.F32.gguf"
    code, _, err = run(capsys, "--catalog", str(catalog), "models", "add", str(tiny))
    assert code == 2 and "already in the catalog as 'tiny-model.f32'" in err
    assert catalog.read_text() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "add", "{w}/nope.gguf"], "no such file or folder"),
        (["models", "add", "{w}/models/broken.gguf"], "invalid GGUF"),
        (["models", "add", "{w}/models/Tiny-Model.F32.gguf", "--tasks", "dance"], "unknown task 'dance'"),
        (["models", "add", "{w}/models", "--id", "x"], "--id names one model"),
        (["models", "remove", "ghost"], "no model 'ghost'"),
        (["models", "inspect", "{w}/models/broken.gguf"], "invalid GGUF"),
        (["models", "inspect", "{w}/missing.gguf"], "file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    argv = ["--catalog", str(workdir / "models.toml"), *[a.format(w=workdir) for a in argv]]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_invalid_catalog_and_settings_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text('[[models]]\nid = "a"\npath = "a.gguf"\ntasks = ["chat"]\ntier = "gpu"\n')
    code, _, err = run(capsys, "--catalog", str(bad), "models", "list")
    assert code == 2 and "model 'a' (entry 1): field 'tier'" in err and "Traceback" not in err
    monkeypatch.setenv("ORIN_RAM_BUDGET_GB", "99")
    code, _, err = run(capsys, "models", "list")
    assert code == 2 and "ram_budget_gb" in err and "allowed: 0.25 to 8.0" in err


def test_usage_errors_exit_2_without_traceback() -> None:
    for argv in (["models", "frobnicate"], ["--no-such-flag"], ["models", "add"]):
        proc = subprocess.run([sys.executable, "-m", "orin_console", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, argv
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_listing_a_catalog_whose_file_is_missing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "models.toml"
    catalog.write_text('[[models]]\nid = "gone"\npath = "gone.gguf"\ntasks = ["chat"]\n')
    code, out, _ = run(capsys, "--catalog", str(catalog), "models", "list", "--json")
    assert code == 0
    row = json.loads(out)[0]
    assert row["id"] == "gone" and row["problem"] and row["size"] is None


HOSTILE = "evil\x1b[2J\x9b31m\u202eftg"  # ESC clears the screen, C1 CSI, a bidi override


def _assert_terminal_safe(text: str) -> None:
    for ch in ("\x1b", "\x9b", "\u202e"):
        assert ch not in text, repr(ch)


def test_hostile_file_names_never_reach_the_terminal_raw(
    workdir: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = workdir / "models.toml"
    hostile = workdir / "models" / f"{HOSTILE}.gguf"
    shutil.copy(tiny_model_path, hostile)
    code, out, err = run(capsys, "--catalog", str(catalog), "models", "add", str(hostile))
    assert code == 0, err
    _assert_terminal_safe(out)
    assert "evil\ufffd[2J\ufffd31m\ufffdftg.gguf" in out
    entry = parse_catalog(catalog.read_text(), catalog).get("evil-2j-31m-ftg")
    assert entry.path == f"models/{HOSTILE}.gguf"  # the catalog keeps the real name

    for argv in (["models", "list"], ["models", "inspect", str(hostile)]):
        code, out, err = run(capsys, "--catalog", str(catalog), *argv)
        assert code == 0, err
        _assert_terminal_safe(out + err)
    for argv in (["models", "list", "--json"], ["models", "inspect", str(hostile), "--json"]):
        code, out, _ = run(capsys, "--catalog", str(catalog), *argv)
        _assert_terminal_safe(out)
        assert HOSTILE in out.encode().decode("unicode_escape")  # escaped, not lost
    data = json.loads(out)
    assert data["summary"]["file"] == str(hostile)

    broken = workdir / "models" / f"{HOSTILE}-broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    code, _, err = run(capsys, "--catalog", str(catalog), "models", "add", str(broken))
    assert code == 2 and "invalid GGUF" in err
    _assert_terminal_safe(err)
    code, out, err = run(capsys, "--catalog", str(catalog), "models", "remove", "evil-2j-31m-ftg")
    assert code == 0
    _assert_terminal_safe(out + err)


def test_list_shows_sizes_with_the_one_byte_formatter(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orin_console.core.units import format_size

    catalog = workdir / "models.toml"
    model = workdir / "models" / "Tiny-Model.F32.gguf"
    assert run(capsys, "--catalog", str(catalog), "models", "add", str(model))[0] == 0
    code, out, _ = run(capsys, "--catalog", str(catalog), "models", "list")
    assert code == 0 and format_size(model.stat().st_size) in out


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder", "huge", "not-utf8"])
def test_a_catalog_that_is_not_a_small_text_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    catalog = tmp_path / "models.toml"
    expected = {
        "dev-zero": "the catalog is a character device, not a regular file",
        "fifo": "the catalog is a FIFO (named pipe), not a regular file",
        "folder": "the catalog is a folder, not a regular file",
        "huge": "the catalog is larger than the limit of 1.0 MB",
        "not-utf8": "the catalog is not valid UTF-8 (byte offset 6",
    }[kind]
    if kind == "dev-zero":
        catalog = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(catalog)
    elif kind == "folder":
        catalog.mkdir()
    elif kind == "huge":
        with catalog.open("wb") as fh:
            fh.truncate(1024**2 + 1)
    else:
        catalog.write_bytes(b"# bad \xff\n")
    for argv in (["models", "list"], ["models", "remove", "x"]):
        code, _, err = run(capsys, "--catalog", str(catalog), *argv)
        assert code == 2 and expected in err, err
        assert len(err.strip().splitlines()) == 1
