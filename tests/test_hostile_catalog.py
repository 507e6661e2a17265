"""Hostile catalogs: every field, wrong types (strict, never coerced), nesting, duplicates.

Each bad file is refused whole with the entry, the field, its line and what is expected; the
command exits 2 in one line; an edit on top of a bad file changes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hostile_support import assert_refused, cli, snapshot
from hypothesis import given
from hypothesis import strategies as st

from orin_console.core.catalog.store import CatalogStore, parse_catalog
from orin_console.core.errors import CatalogError

HEAD = '[[models]]\nid = "a"\npath = "a.gguf"\ntasks = ["chat"]\n'

# (a field line added to a valid entry, words the error must hold)
FIELD_CASES: list[tuple[str, tuple[str, ...]]] = [
    ("priority = true", ("field 'priority' = True: expected a whole number without quotes (line 5)",)),
    ("priority = 1.0", ("field 'priority' = 1.0: expected a whole number",)),
    ("priority = -1", ("field 'priority' = -1",)),
    ('context = "4096"', ("field 'context' = '4096': expected a whole number without quotes (line 5)",)),
    ("context = 4096.0", ("field 'context' = 4096.0: expected a whole number",)),
    ("context = 63", ("field 'context' = 63",)),
    ("context = 131073", ("field 'context' = 131073",)),
    ("context = 99999999999999999999", ("field 'context' = 99999999999999999999: input should be less than",)),
    ('pin = "yes"', ("field 'pin' = 'yes': expected true or false without quotes",)),
    ("pin = 1", ("field 'pin' = 1: expected true or false",)),
    ('tier = "RAM"', ("field 'tier' = 'RAM'",)),
    ("tier = 1", ("field 'tier' = 1",)),
    ('sha256 = "' + "A" * 64 + '"', ("field 'sha256' must be 64 lower-case hex digits",)),
    ("sha256 = 5", ("field 'sha256' = 5: expected text in double quotes",)),
    ("colour = 1", ("field 'colour' is not known",)),
    ('extra = "\\u202e\\u001b[2J"', ("field 'extra' is not known",)),
]


@pytest.mark.parametrize(("line", "needles"), FIELD_CASES, ids=[c[0][:30] for c in FIELD_CASES])
def test_each_field_is_strict_and_names_its_line(tmp_path: Path, line: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(HEAD + line + "\n", tmp_path / "models.toml")
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert "\x1b" not in message and "\u202e" not in message


# Whole-entry cases: the key fields in the wrong type or form.
ENTRY_CASES: list[tuple[str, tuple[str, ...]]] = [
    ('[[models]]\nid = 5\npath = "a.gguf"\ntasks = ["chat"]\n',
     ("field 'id' = 5: expected text in double quotes (line 2)",)),
    ('[[models]]\nid = "../x"\npath = "a.gguf"\ntasks = ["chat"]\n', ("field 'id' = '../x': must start",)),
    ('[[models]]\nid = ""\npath = "a.gguf"\ntasks = ["chat"]\n', ("field 'id' = '': must start",)),
    ('[[models]]\nid = "a"\npath = 7\ntasks = ["chat"]\n', ("field 'path' = 7: expected text",)),
    ('[[models]]\nid = "a"\npath = ""\ntasks = ["chat"]\n', ("field 'path' = ''",)),
    ('[[models]]\nid = "a"\npath = "a\\u0000b.gguf"\ntasks = ["chat"]\n', ("field 'path'", "NUL character")),
    ('[[models]]\nid = "a"\npath = "' + "x" * 5000 + '"\ntasks = ["chat"]\n', ("field 'path'", "at most 4096")),
    ('[[models]]\nid = "a"\npath = "a.gguf"\ntasks = "chat"\n', ("field 'tasks' = 'chat': expected a list",)),
    ('[[models]]\nid = "a"\npath = "a.gguf"\ntasks = [1]\n', ("field 'tasks.0' = 1",)),
    ('[[models]]\nid = "a"\npath = "a.gguf"\ntasks = ["chat", "chat"]\n', ("lists a task twice",)),
    ('models = [1, 2]\n', ("entry 1: must be a table",)),
    ('models = "x"\n', ("'models' must be an array of tables",)),
    ("ram_budget_gb = 4\n",
     ("unknown top-level key(s) ram_budget_gb", "looks like a config file: give it with --config")),
    ('[models]\nid = "a"\n', ("'models' must be an array of tables",)),
    ('[[models]]\nid = "a"\npath = "a.gguf"\ntasks = ["chat"]\n'
     '[[models]]\nid = "b"\npath = "./a.gguf"\ntasks = ["code"]\n',
     ("model 'b' (entry 2): its file ./a.gguf is already the file of entry 1", "remove one entry")),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", ("nested too deeply",)),
    ("a = " + "{b=" * 5000 + "1" + "}" * 5000 + "\n", ("nested too deeply",)),
    ("\ufeff[[models]]\n", ("not valid TOML",)),
    ("\x00", ("not valid TOML",)),
]


@pytest.mark.parametrize(("body", "needles"), ENTRY_CASES, ids=[f"entry-{i}" for i in range(len(ENTRY_CASES))])
def test_bad_entries_and_shapes_are_refused_in_one_message(tmp_path: Path, body: str,
                                                           needles: tuple[str, ...]) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(body, tmp_path / "models.toml")
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert len(message) < 2000, "a huge value is cut, not echoed whole"


def test_one_file_named_twice_is_refused_but_a_symlink_is_a_deliberate_second_name(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "link.gguf").symlink_to(tmp_path / "a.gguf")
    absolute = HEAD + f'[[models]]\nid = "b"\npath = "{tmp_path / "sub" / ".." / "a.gguf"}"\ntasks = ["chat"]\n'
    with pytest.raises(CatalogError, match="already the file of entry 1"):
        parse_catalog(absolute, tmp_path / "models.toml")
    linked = HEAD + '[[models]]\nid = "b"\npath = "link.gguf"\ntasks = ["chat"]\n'
    assert [e.id for e in parse_catalog(linked, tmp_path / "models.toml")] == ["a", "b"]


@pytest.mark.parametrize(("line", "needles"), FIELD_CASES[:6], ids=[c[0][:30] for c in FIELD_CASES[:6]])
def test_the_cli_refuses_a_bad_catalog_in_one_line_and_edits_nothing(
        tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str],
        line: str, needles: tuple[str, ...]) -> None:
    catalog = tmp_path / "models.toml"
    catalog.write_text(HEAD + line + "\n")
    shutil.copyfile(tiny_model_path, tmp_path / "new.gguf")
    before = snapshot(catalog)
    assert_refused(cli(capsys, "--catalog", str(catalog), "models", "list"), "last good catalog", *needles)
    assert_refused(cli(capsys, "--catalog", str(catalog), "models", "add", str(tmp_path / "new.gguf")), *needles)
    assert_refused(cli(capsys, "--catalog", str(catalog), "models", "remove", "a"), *needles)
    assert snapshot(catalog) == before


def test_a_catalog_context_above_the_trained_one_is_flagged_in_the_list(
        tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The catalog cannot read model files while it parses; `models add` refuses such a
    context and `models list` flags a hand-edited one (tiny model: trained context 256)."""
    shutil.copyfile(tiny_model_path, tmp_path / "a.gguf")
    catalog = tmp_path / "models.toml"
    catalog.write_text(HEAD + "context = 4096\n")
    assert cli(capsys, "--catalog", str(catalog), "models", "list").code == 0
    result = cli(capsys, "--catalog", str(catalog), "models", "list", "--json")
    assert "context 4096 is above the model's trained context 256" in result.out


def test_a_bad_edit_on_disk_leaves_the_last_good_catalog_in_force(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(HEAD)
    store = CatalogStore(path)
    assert [e.id for e in store.load()] == ["a"]
    path.write_text(HEAD + "priority = true\n")
    with pytest.raises(CatalogError, match="priority"):
        store.load()
    assert [e.id for e in store.current] == ["a"]


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_VALUE = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT,
                   st.lists(_TEXT, max_size=3))


@given(field=st.sampled_from(["id", "path", "tasks", "tier", "context", "priority", "pin", "sha256", "zz"]),
       value=_VALUE)
def test_any_value_in_any_field_is_accepted_or_refused_cleanly(field: str, value: object) -> None:
    """Never an exception other than CatalogError, whatever the value."""
    import tomlkit

    entry = {"id": "a", "path": "a.gguf", "tasks": ["chat"], field: value}
    text = tomlkit.dumps({"models": [entry]})
    try:
        parse_catalog(text, Path("/nonexistent/models.toml"))
    except CatalogError as exc:
        assert "\x1b" not in str(exc) and "\u202e" not in str(exc)


def test_a_file_of_thousands_of_broken_entries_is_refused_in_one_bounded_message(tmp_path: Path) -> None:
    """Each problem is named up to MAX_PROBLEMS, the rest counted: no megabyte of errors, and
    the line lookup stays linear (it was a scan of the whole text per problem)."""
    body = "".join(f'[[models]]\nid = "m{i}"\npath = "m{i}.gguf"\ntasks = ["chat"]\npriority = true\n'
                   for i in range(5000))
    with pytest.raises(CatalogError) as info:
        parse_catalog(body, tmp_path / "models.toml")
    message = str(info.value)
    assert "model 'm19' (entry 20): field 'priority' = True: expected a whole number without quotes (line 100)" \
        in message
    assert "m20" not in message and message.endswith("and 4980 more problem(s)")
    assert len(message) < 5000


_TOMLISH = st.lists(st.sampled_from(["[[models]]\n", "[models]\n", 'id = "a"\n', "id = 1\n", 'path = "a.gguf"\n',
                                     'tasks = ["chat"]\n', "tasks = [[[]]]\n", "context = 1e9\n", "pin = nan\n",
                                     "priority = -0\n", "= =\n", '"\\u0000" = 1\n', "x = {a = {b = 1}}\n", "\ufeff",
                                     "\x00", "\udcff", "[", "]", "\n", "'''", '"""']), max_size=12).map("".join)


@given(text=st.one_of(_TOMLISH, st.text(max_size=200)))
def test_any_text_is_a_catalog_or_a_catalog_error(text: str) -> None:
    try:
        parse_catalog(text, Path("/nonexistent/models.toml"))
    except CatalogError as exc:
        assert "\x1b" not in str(exc) and "\x00" not in str(exc) and len(str(exc)) < 10_000
