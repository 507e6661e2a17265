"""Hostile settings: the config file (types strict, nesting, encoding, odd files) and the
``ORIN_*`` variables (JSON lists, typos). Each is one clear line, exit 2 from the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile_support import assert_refused, cli
from hypothesis import given, settings
from hypothesis import strategies as st

from orin_console.core.errors import SettingsError
from orin_console.core.settings import Settings, load_settings, unknown_variables

# (config file bytes, words the error must hold)
FILE_CASES: list[tuple[bytes, tuple[str, ...]]] = [
    (b"port = true\n", ("port = True (line 1): expected a whole number without quotes",)),
    (b'# c\nram_budget_gb = "4"\n', ("ram_budget_gb = '4' (line 2): expected a number without quotes",)),
    (b"auto_optimise = 1\n", ("auto_optimise = 1 (line 1): expected true or false",)),
    (b"theme = 5\n", ("theme = 5 (line 1): expected text in double quotes",)),
    (b'model_folders = "/data"\n', ("model_folders = '/data' (line 1): expected a list",)),
    (b'keymap = "f5"\n', ("keymap = 'f5' (line 1): expected a table",)),
    (b'catalog_path = "/tmp/a\\u0000b.toml"\n', ("catalog_path", "NUL character")),
    (b'state_dir = "a\\u0000"\n', ("state_dir", "NUL character")),
    (b'model_folders = ["a\\u0000"]\n', ("model_folders", "NUL character")),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", ("nested too deeply",)),
    (b"a = " + b"{b=" * 5000 + b"1" + b"}" * 5000 + b"\n", ("nested too deeply",)),
    (b'theme = "\xff"\n', ("not valid UTF-8 (byte offset 9",)),
    (b"port = 0x\n", ("not valid TOML",)),
    (b"port = 99999\n", ("port = 99999", "allowed: 1 to 65535")),
    (b"ram_budget_gb = nan\n", ("ram_budget_gb",)),
    (b"ram_budget_gb = inf\n", ("ram_budget_gb", "allowed: 0.25 to 8.0")),
    (b'theme = "\\u202eevil\\u001b[2J"\n', ("theme",)),
    (b'[section]\nport = 1\n', ("section", "is not a known setting")),
    (b'[[models]]\nid = "a"\npath = "a.gguf"\ntasks = ["chat"]\n',
     ("models = ", "looks like a model catalog: give it with --catalog, not --config")),
    (b'token = "my secret\\u0007"\n', ("token = (hidden)", "HTTP header")),
]


@pytest.mark.parametrize(("body", "needles"), FILE_CASES, ids=[f"file-{i}" for i in range(len(FILE_CASES))])
def test_a_bad_config_file_is_refused_with_the_key_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            body: bytes, needles: tuple[str, ...]) -> None:
    monkeypatch.delenv("ORIN_STATE_DIR")  # the test environment's variable would beat the file
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(body)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg, env={})
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    assert_refused(cli(capsys, "--config", str(cfg), "models", "list"), *needles)


# (variables, words the error must hold)
ENV_CASES: list[tuple[dict[str, str], tuple[str, ...]]] = [
    ({"ORIN_MODEL_FOLDERS": "notjson"}, ("ORIN_MODEL_FOLDERS = 'notjson': not valid JSON", '["/data/models"]')),
    ({"ORIN_KEYMAP": "f5"}, ("ORIN_KEYMAP", "not valid JSON")),
    ({"ORIN_MODEL_FOLDERS": '"a"'}, ("model_folders",)),
    ({"ORIN_PORT": "true"}, ("port",)),
    ({"ORIN_PORT": ""}, ("port",)),
    ({"ORIN_RAM_BUDGET_GB": "nan"}, ("ram_budget_gb",)),
    ({"ORIN_AUTO_OPTIMISE": "maybe"}, ("auto_optimise",)),
    ({"ORIN_THEME": "\u202e\x1b[2J"}, ("theme",)),
    ({"ORIN_TOKEN": "se cret"}, ("token = (hidden): holds a space",)),
    ({"ORIN_TOKEN": "x" * 600}, ("token = (hidden): is longer than 512",)),
    ({"ORIN_CONFIG": "/nonexistent/\u202e"}, ()),  # ORIN_CONFIG may name a missing file: defaults
]


@pytest.mark.parametrize(("env", "needles"), ENV_CASES, ids=[f"env-{i}" for i in range(len(ENV_CASES))])
def test_bad_variables_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                    needles: tuple[str, ...]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = cli(capsys, "--catalog", str(tmp_path / "models.toml"), "models", "list", "--json")
    if not needles:
        assert result.code == 0 and result.err == ""
        return
    assert_refused(result, *needles)


def test_an_explicit_config_file_must_exist_but_the_default_may_not(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="named by --config does not exist"):
        load_settings(tmp_path / "missing.toml", env={})
    assert load_settings(env={"ORIN_CONFIG": str(tmp_path / "missing.toml")}).port == 8000


def test_strict_file_types_still_accept_what_is_right(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('port = 8001\nram_budget_gb = 4\nswap_budget_gb = 4.5\nauto_optimise = true\n'
                   'model_folders = ["/data"]\nkeymap = { "model.load" = "f5" }\ntoken = "abc"\n')
    s = load_settings(cfg, env={})
    assert (s.port, s.ram_budget_gb, s.swap_budget_gb, s.auto_optimise) == (8001, 4.0, 4.5, True)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["ORIN_RAM_BUGDET_GB"],
         ["ORIN_RAM_BUGDET_GB is not a setting and is ignored; did you mean ORIN_RAM_BUDGET_GB?"]),
        (["ORIN_TOKN"], ["ORIN_TOKN is not a setting and is ignored; did you mean ORIN_TOKEN?"]),
        (["ORIN_ZZZZZZZZ"], ["ORIN_ZZZZZZZZ is not a setting and is ignored; the settings are listed in the README"]),
        (["ORIN_X\u202e"], ["ORIN_X\ufffd is not a setting and is ignored; the settings are listed in the README"]),
        (["ORIN_PORT", "ORIN_CONFIG", "ORIN_DEBUG", "ORIN_API_URL", "ORIN_TEST_MARK", "ORIN_RUNNER_TEST_HOOKS",
          "ORIN_RUNNER_TEST_BALLAST_MB", "PATH", "ORINOCO"], []),
        (["ORIN_RUNER_TEST_HOOKS"],
         ["ORIN_RUNER_TEST_HOOKS is not a setting and is ignored; did you mean ORIN_RUNNER_TEST_HOOKS?"]),
    ],
)
def test_unknown_variables_name_the_closest_known_one(names: list[str], expected: list[str]) -> None:
    assert unknown_variables({name: "1" for name in names}) == expected


def test_a_config_path_that_is_not_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    assert_refused(cli(capsys, "--config", str(fifo), "models", "list"), "FIFO")
    assert_refused(cli(capsys, "--config", "/dev/zero", "models", "list"), "character device")
    assert_refused(cli(capsys, "--config", str(loop), "models", "list"), "loop.toml")


_ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@settings(max_examples=150)
@given(field=st.sampled_from(sorted(Settings.model_fields)), value=_ANY_TEXT)
def test_any_text_in_any_variable_gives_settings_or_a_settings_error(field: str, value: str) -> None:
    try:
        load_settings(env={f"ORIN_{field.upper()}": value})
    except SettingsError as exc:
        assert "\x1b" not in str(exc) and len(str(exc)) < 1000


_TOML_VALUE = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), _ANY_TEXT,
                        st.lists(_ANY_TEXT, max_size=3), st.dictionaries(_ANY_TEXT, _ANY_TEXT, max_size=2))


@settings(max_examples=150)
@given(field=st.sampled_from([*sorted(Settings.model_fields), "zz"]), value=_TOML_VALUE)
def test_any_value_in_the_config_file_gives_settings_or_a_settings_error(field: str, value: object) -> None:
    import tempfile

    import tomlkit

    with tempfile.TemporaryDirectory() as folder:
        cfg = Path(folder) / "config.toml"
        cfg.write_text(tomlkit.dumps({field: value}))
        try:
            load_settings(cfg, env={})
        except SettingsError as exc:
            assert "\x1b" not in str(exc) and len(str(exc)) < 1000


@pytest.mark.parametrize("body", [
    "".join(f"key{i} = {i}\n" for i in range(20000)),
    "keymap = {" + ",".join(f'"k{i}" = "f5"' for i in range(5000)) + "}\n",
    "".join(f'# {i}\n' for i in range(100)) + "port = true\n",
], ids=["many-unknown-keys", "many-keymap-entries", "line-101"])
def test_many_problems_give_one_bounded_message(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(body)
    with pytest.raises(SettingsError) as info:
        load_settings(cfg, env={})
    message = str(info.value)
    assert len(message) < 5000, len(message)
    assert "more" in message or "(line 101)" in message


def test_a_refused_token_is_never_echoed(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('token = "my secret"\n')
    for env, file in (({"ORIN_TOKEN": "my secret"}, None), ({}, cfg)):
        with pytest.raises(SettingsError) as info:
            load_settings(file, env=env)
        assert "my secret" not in str(info.value) and "token = (hidden)" in str(info.value)
