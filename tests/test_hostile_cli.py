"""Hostile input to every ``orin-console`` subcommand and argument: one clear line, exit 2,
no traceback, the catalog untouched. In-process (the real ``main()``) wherever the process
does not matter; the process-level cases (closed descriptors, a full disk, pipes) are in
``test_hostile_process.py``."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hostile_support import CATALOG, assert_refused, cli, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.cli.main import main
from orin_console.core.catalog.store import parse_catalog
from orin_console.core.engine.inference import Engine


@pytest.fixture
def home(tmp_path: Path, tiny_model_path: Path) -> Path:
    """A folder with ``alpha.gguf`` (trained context 256) in ``models.toml``, and ``new.gguf``."""
    shutil.copyfile(tiny_model_path, tmp_path / "alpha.gguf")
    shutil.copyfile(tiny_model_path, tmp_path / "new.gguf")
    (tmp_path / "models.toml").write_text(CATALOG.replace("context = 512", "context = 256"))
    return tmp_path


# (arguments after `--catalog CATALOG`, words the error line must hold)
ADD_CASES: list[tuple[list[str], tuple[str, ...]]] = [
    (["--id", "../x"], ("id '../x' is not allowed", "letters, digits")),
    (["--id", ""], ("id '' is not allowed",)),
    (["--id", "a" * 65], ("is not allowed", "at most 64 characters")),
    (["--id", "x\u202ey"], ("is not allowed",)),
    (["--id", "x\x1b[2Jy"], ("is not allowed",)),
    (["--id", "alpha"], ("a model called 'alpha' is already in",)),
    (["--context", "-5"], ("context -5 is out of range", "64 to 131072")),
    (["--context", "0"], ("context 0 is out of range",)),
    (["--context", "99999999"], ("context 99999999 is out of range",)),
    (["--context", "4096"], ("context 4096 is above the model's trained context 256", "256 or less")),
    (["--context", "ten"], ("--context: invalid int value: 'ten'",)),
    (["--context", "1e3"], ("invalid int value",)),
    (["--tasks", "chat,chat"], ("task 'chat' is given twice",)),
    (["--tasks", ","], ("--tasks is empty",)),
    (["--tasks", "dance"], ("unknown task 'dance'", "allowed: chat")),
    (["--tasks", "chat,\u202ecode"], ("unknown task",)),
    (["--tier", "gpu"], ("--tier: invalid choice: 'gpu'",)),
]


@pytest.mark.parametrize(("args", "needles"), ADD_CASES, ids=[" ".join(a)[:40] for a, _ in ADD_CASES])
def test_models_add_refuses_bad_arguments_in_one_line(home: Path, capsys: pytest.CaptureFixture[str],
                                                      args: list[str], needles: tuple[str, ...]) -> None:
    catalog = home / "models.toml"
    before = snapshot(catalog)
    line = assert_refused(cli(capsys, "--catalog", str(catalog), "models", "add", str(home / "new.gguf"), *args),
                          *needles)
    assert snapshot(catalog) == before, line


def test_an_explicit_id_and_context_are_used_not_replaced_by_defaults(home: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    catalog = home / "models.toml"
    result = cli(capsys, "--catalog", str(catalog), "models", "add", str(home / "new.gguf"),
                 "--id", "n", "--context", "64")
    assert result.code == 0, result.err
    entry = parse_catalog(catalog.read_text(), catalog).get("n")
    assert entry.context == 64
    assert catalog.read_text().startswith("# hand-written")


# Every other subcommand and argument, in-process.
OTHER_CASES: list[tuple[list[str], tuple[str, ...]]] = [
    (["models", "remove", "ghost"], ("no model 'ghost'", "known: alpha")),
    (["models", "remove", "x\u202e\x1b[2J"], ("no model",)),
    (["models", "remove", ""], ("no model ''",)),
    (["models", "inspect", "{h}/models.toml"], ("invalid GGUF", "magic")),
    (["models", "inspect", "{h}"], ("not a regular file",)),
    (["models", "frobnicate"], ("invalid choice: 'frobnicate'",)),
    (["models", "\x1b[31mred\u202e"], ("invalid choice: '\\x1b[31mred\\u202e'",)),  # escaped, not raw
    (["models", "add", "-x.gguf"], ("arguments are required: path", "goes after '--' (-- -x.gguf) or as ./-x.gguf")),
    (["models"], ("required",)),
    (["--no-such-flag"], ("unrecognized arguments",)),
    (["run"], ("required: prompt",)),
    (["run", "hi", "--mode", "telepathy"], ("--mode: invalid choice",)),
    (["run", "hi", "--max-tokens", "many"], ("--max-tokens: invalid int value",)),
    (["run", "hi", "--temperature", "hot"], ("--temperature: invalid float value",)),
    (["telemetry", "--source", "tegrastats"], ("--source: invalid choice",)),
    (["telemetry", "--interval", "fast"], ("--interval: not a number: 'fast'",)),
    (["plan", "--bogus"], ("unrecognized arguments",)),
    (["serve", "--port", "http"], ("--port",)),
    (["serve", "--port", "70000"], ("--port 70000: must be 0 to 65535",)),
    (["serve", "--host", "\x1b[2J", "--token", "t" * 32], ("--host '\ufffd[2J': not an address",)),
    (["serve", "--host", "a b", "--token", "t" * 32], ("not an address",)),
    (["serve", "--catalog", "{h}/x\x00.toml"], ("catalog_path", "NUL character")),
    (["serve", "--host", "0.0.0.0", "--token", ""], ("--token is empty",)),
    (["serve", "--host", "0.0.0.0", "--token", "se cret\n"], ("--token holds a space, a control",)),
    (["serve", "--token", "t\u202e" * 20], ("--token holds", "HTTP header")),
    (["--serve=:0", "models", "list"], ("--serve applies to the console (no command)", "orin-console serve")),
    (["telemetry", "--watch", "--count", "0"], ("--count: 0: give 1 or more",)),
    (["telemetry", "--watch", "--count", "-3"], ("--count: -3: give 1 or more",)),
    (["telemetry", "--interval", "nan"], ("--interval: must be between 0.05 and 3600 seconds",)),
    (["run", "hi", "--max-tokens", "0"], ("max_tokens = 0",)),
    (["run", "hi", "--temperature", "nan"], ("temperature = nan",)),
    (["run", "hi", "--top-p", "0"], ("top_p = 0.0",)),
    (["run", "hi", "--seed", "-1"], ("seed = -1",)),
    (["run", "hi", "--stop", ""], ("stop = ('',)",)),
    (["run", ""], ("prompt = '': must be a non-empty string",)),
    (["run", "\udcff"], ("cannot be encoded as UTF-8",)),
    (["run", "hi", "--model", "alpha", "--mode", "auto"], ("--model needs --mode manual or hybrid",)),
    (["--attach", "notaurl"], ("--attach 'notaurl'",)),  # A's and F's arguments: one line too
    (["--attach", "http://127.0.0.1:1", "models", "list"], ("--attach applies to the console", "the SDK")),
    (["--attach", "http://127.0.0.1:1", "web"], ("--attach applies to the console", "web --attach URL")),
    (["web", "--allow-host", "a\x1bb"], ("--allow-host",)),
    (["web", "--port", "70000"], ("--port 70000",)),
    (["web", "--max-sessions", "0"], ("--max-sessions 0",)),
]


@pytest.mark.parametrize(("argv", "needles"), OTHER_CASES, ids=[" ".join(a)[:40] for a, _ in OTHER_CASES])
def test_other_subcommands_refuse_bad_arguments_in_one_line(home: Path, capsys: pytest.CaptureFixture[str],
                                                            argv: list[str], needles: tuple[str, ...]) -> None:
    catalog = home / "models.toml"
    before = snapshot(catalog)
    assert_refused(cli(capsys, "--catalog", str(catalog), *[a.format(h=home) for a in argv]), *needles)
    assert snapshot(catalog) == before


@pytest.mark.parametrize("mode", ["hybrid", "manual"])
def test_run_with_an_unknown_model_is_an_error_in_every_mode(home: Path, capsys: pytest.CaptureFixture[str],
                                                             mode: str) -> None:
    """Hybrid used to answer silently with another model."""
    result = cli(capsys, "--catalog", str(home / "models.toml"), "run", "hi", "--mode", mode,
                 "--model", "nope", "--max-tokens", "2")
    assert_refused(result, "no model 'nope'", "known: alpha")
    assert result.out == ""


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--config", "{h}/nonexistent.toml", "models", "list"], ("nonexistent.toml", "does not exist", "--config")),
        (["--config", "{h}", "models", "list"], ("is a folder",)),
        (["--catalog", "{h}/a\x00b.toml", "models", "list"], ("catalog_path", "NUL character")),
        (["--config", "{h}/a\x00b.toml", "models", "list"], ("NUL character",)),
        (["models", "add", "{h}/a\x00b.gguf"], ("NUL character",)),
        (["models", "inspect", "{h}/a\x00b.gguf"], ("NUL character",)),
        (["--catalog", "{h}", "models", "list"], ("catalog is a folder",)),
        (["--catalog", "/dev/zero", "models", "list"], ("character device",)),
    ],
    ids=["config-missing", "config-folder", "catalog-nul", "config-nul", "add-nul", "inspect-nul",
         "catalog-folder", "catalog-dev-zero"],
)
def test_bad_paths_in_arguments(home: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                needles: tuple[str, ...]) -> None:
    catalog = home / "models.toml"
    before = snapshot(catalog)
    args = [a.format(h=home) for a in argv]
    if "--catalog" not in args:
        args = ["--catalog", str(catalog), *args]
    assert_refused(cli(capsys, *args), *needles)
    assert snapshot(catalog) == before


def test_an_unknown_orin_variable_is_a_warning_naming_the_closest(home: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORIN_RAM_BUGDET_GB", "3")
    monkeypatch.setenv("ORIN_RUNNER_TEST_HOOKS", "0")  # read by the runners: known, no warning
    result = cli(capsys, "--catalog", str(home / "models.toml"), "models", "list", "--json")
    assert result.code == 0
    assert result.err.strip().splitlines() == [
        "orin-console: warning: ORIN_RAM_BUGDET_GB is not a setting and is ignored; "
        "did you mean ORIN_RAM_BUDGET_GB?"]


class _FakeStream:
    """Stands for an :class:`EngineStream` whose model emits terminal-driving text."""

    model_id = "alpha"
    will_load = False
    load_tier = None

    def __init__(self, pieces: list[str]) -> None:
        self._pieces = pieces
        self.result = SimpleNamespace(summary=lambda: "alpha (fake) \u202eevil\x1b[2J")

    def __iter__(self) -> Any:
        return iter(self._pieces)

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_run_strips_bidi_and_control_characters_from_the_answer_keeping_newlines_and_tabs(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = ["safe\u202e", "txt\x1b]0;pwned\x07", "\x1b[2J", "a\tb\n", "c\u2066d\u200f\x9b\r", "\u2028e\x00"]
    monkeypatch.setattr(Engine, "stream_quick", lambda self, *a, **k: _FakeStream(pieces))
    result = cli(capsys, "--catalog", str(home / "models.toml"), "run", "hi")
    assert result.code == 0, result.err
    assert result.out == "safetxt]0;pwned[2Ja\tb\ncde\n"
    for bad in ("\u202e", "\x1b", "\x07", "\u2066", "\u200f", "\x9b", "\r", "\u2028", "\x00"):
        assert bad not in result.out and bad not in result.err


_ARG = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


@settings(max_examples=60)
@given(model_id=st.one_of(st.none(), _ARG), context=st.one_of(st.none(), _ARG, st.integers().map(str)),
       tasks=st.one_of(st.none(), _ARG, st.lists(st.sampled_from(["chat", "code", "x", ""]), max_size=3).map(",".join)),
       tier=st.one_of(st.none(), st.sampled_from(["ram", "swap", "disk", "gpu", ""])))
def test_models_add_with_any_arguments_adds_or_refuses_in_one_line(
        tiny_model_path: Path, model_id: str | None, context: str | None, tasks: str | None, tier: str | None) -> None:
    """Whatever the arguments: exit 0 with the entry written, or exit 2 with one line and the
    catalog as it was."""
    argv: list[str] = []
    for flag, value in (("--id", model_id), ("--context", context), ("--tasks", tasks), ("--tier", tier)):
        if value is not None:
            argv.append(f"{flag}={value}")
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        shutil.copyfile(tiny_model_path, home / "m.gguf")
        catalog = home / "models.toml"
        catalog.write_text(CATALOG)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["--catalog", str(catalog), "models", "add", str(home / "m.gguf"), *argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        assert code in (0, 2), err.getvalue()
        assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
        if code == 2:
            assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
            assert catalog.read_text() == CATALOG
        else:
            assert len(parse_catalog(catalog.read_text(), catalog)) == 2


@pytest.mark.parametrize("columns", ["0", "1", "-5", "abc", "99999999"])
def test_a_hostile_terminal_width_never_silences_output_or_errors(home: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  columns: str) -> None:
    """COLUMNS=0 made Rich print nothing at all: the table and the error line were lost."""
    monkeypatch.setenv("COLUMNS", columns)
    result = cli(capsys, "--catalog", str(home / "models.toml"), "models", "list")
    assert result.code == 0 and "alpha" in result.out
    assert_refused(cli(capsys, "--catalog", str(home / "models.toml"), "models", "remove", "nope"),
                   "no model 'nope'")


def test_run_refuses_a_prompt_far_beyond_the_models_context_before_the_runner_tokenizes_it(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 3 MB prompt kept a runner tokenizing until the watchdog killed it (120 s)."""
    result = cli(capsys, "--catalog", str(home / "models.toml"), "run", "a " * 10_000, "--max-tokens", "2")
    assert_refused(result, "the prompt is 20000 bytes", "context of 256 tokens", "8192 bytes", "shorten it")
    assert result.out == ""


@pytest.mark.parametrize(("argv", "needles"), [
    (["run", "hi"], ("cannot be read", "orin-console models list")),
    (["run", "hi", "--model", "alpha"], ("alpha.gguf: invalid GGUF: file: cannot open: No such file",)),
], ids=["auto", "manual"])
def test_run_with_a_catalog_model_whose_file_is_gone_names_the_file_problem(
        home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needles: tuple[str, ...]) -> None:
    """Auto routing said only 'refused by admission … unload or move a model', which sends the
    operator after memory when the file is the problem; manual tries the load and names it."""
    (home / "alpha.gguf").unlink()
    result = cli(capsys, "--catalog", str(home / "models.toml"), *argv)
    result.err = "".join(line for line in result.err.splitlines(keepends=True) if not line.startswith("loading "))
    assert_refused(result, *needles)
