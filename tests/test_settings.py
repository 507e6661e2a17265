from __future__ import annotations

import os
from pathlib import Path

import pytest

from orin_console.core.errors import SettingsError
from orin_console.core.files import CONFIG_FILE_LIMIT
from orin_console.core.settings import GB, Settings, default_config_file, load_settings


def test_defaults_match_design() -> None:
    s = load_settings(env={})
    assert (s.ram_budget_gb, s.swap_budget_gb, s.max_model_gb, s.reserve_mb) == (5.0, 10.0, 7.0, 512)
    assert s.ram_budget_bytes == 5 * GB
    assert s.bind_host == "127.0.0.1" and s.token is None
    assert s.telemetry_source == "auto"


def test_env_beats_file_and_overrides_beat_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('swap_budget_gb = 11\nmodel_folders = ["/srv/models"]\ntheme = "orin-light"\n')
    s = load_settings(cfg, env={"ORIN_SWAP_BUDGET_GB": "3"})
    assert s.swap_budget_gb == 3.0
    assert s.model_folders == [Path("/srv/models")] and s.theme == "orin-light"
    assert load_settings(cfg, env={"ORIN_SWAP_BUDGET_GB": "3"}, swap_budget_gb=2).swap_budget_gb == 2


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ORIN_RAM_BUDGET_GB": "9"}, "ram_budget_gb = '9'"),
        ({"ORIN_SWAP_BUDGET_GB": "12.5"}, "allowed: 0.25 to 12.0"),
        ({"ORIN_RESERVE_MB": "-1"}, "reserve_mb"),
        ({"ORIN_PORT": "http"}, "port"),
        ({"ORIN_TELEMETRY_SOURCE": "tegrastats"}, "telemetry_source"),
        ({"ORIN_THEME": "../etc"}, "theme"),
    ],
)
def test_out_of_range_is_refused_with_the_range(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env=env)
    assert expected in str(info.value)


def test_unknown_key_and_bad_toml_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("ram_budget = 4\n")
    with pytest.raises(SettingsError, match="ram_budget = 4: is not a known setting"):
        load_settings(cfg, env={})
    cfg.write_text("ram_budget_gb = \n")
    with pytest.raises(SettingsError, match="cannot read the config file"):
        load_settings(cfg, env={})


def test_config_file_location(tmp_path: Path) -> None:
    assert default_config_file({"ORIN_CONFIG": str(tmp_path / "x.toml")}) == tmp_path / "x.toml"
    assert default_config_file({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "orin-console" / "config.toml"
    cfg = tmp_path / "x.toml"
    cfg.write_text("ram_budget_gb = 2\n")
    assert load_settings(env={"ORIN_CONFIG": str(cfg)}).ram_budget_gb == 2.0


def test_every_field_is_documented() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def test_a_config_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A FIFO would hang the read and /dev/zero would fill memory: both are refused at once."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(SettingsError, match=r"config\.toml: the config file is a FIFO \(named pipe\)"):
        load_settings(fifo, env={})
    with pytest.raises(SettingsError, match=r"^/dev/zero: the config file is a character device"):
        load_settings(Path("/dev/zero"), env={})


def test_an_oversized_or_non_utf8_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("# padding\n" * (CONFIG_FILE_LIMIT // 10 + 1))
    with pytest.raises(SettingsError, match=r"larger than the limit of 1\.0 MB \(1048576 bytes\)"):
        load_settings(cfg, env={})
    cfg.write_bytes(b"theme = \"\xff\"\n")
    with pytest.raises(SettingsError, match=r"not valid UTF-8 \(byte offset 9"):
        load_settings(cfg, env={})
