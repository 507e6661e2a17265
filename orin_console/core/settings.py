"""Settings: one pydantic model, read from a TOML config file and ``ORIN_*`` variables.

Precedence, highest first: explicit overrides passed to :func:`load_settings`, environment
variables (``ORIN_RAM_BUDGET_GB=4``), the config file, the defaults below.

The config file is the first of: the ``config_file`` argument, ``$ORIN_CONFIG``,
``$XDG_CONFIG_HOME/orin-console/config.toml`` (``~/.config/orin-console/config.toml``). A
missing file is fine (defaults apply) unless it was named explicitly (``--config``); a file
that exists but is invalid is refused with every bad key named. Keys in the file are the
field names below, at top level::

    ram_budget_gb = 4.5
    model_folders = ["/data/models"]
    theme = "orin-light"

Values in the file are strict: ``port = true`` or ``ram_budget_gb = "4"`` is refused with its
line, not coerced (variables are text by nature and are parsed). A list or table setting
given as a variable is JSON: ``ORIN_MODEL_FOLDERS='["/data/models"]'``. An ``ORIN_*`` variable
that is no setting is not an error (other programs may share the prefix) but
:func:`unknown_variables` names it and the closest known one, and the CLI warns.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from orin_console.core.errors import SettingsError
from orin_console.core.settings_file import MAX_PROBLEMS, TomlFileSource, show_value
from orin_console.core.text import sanitize, sanitize_path
from orin_console.core.units import GB, MB

TelemetrySourceName = Literal["auto", "jtop", "nvml", "psutil"]

CONSOLE_BINDING_IDS: tuple[str, ...] = (
    "chat.focus", "stop", "model.load", "model.unload", "model.to_ram", "model.to_swap",
    "model.pin", "models.add", "plan.show", "chat.mode", "theme.next", "help", "quit",
)
"""The console's remappable actions (the ids of its key bindings), for the ``keymap`` setting."""

_KEY_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_+")


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a bearer token (None: it can). It travels in an HTTP header, so
    only visible ASCII (no space, no control character) can ever match; the token itself is
    never part of the message."""
    if not token:
        return "is empty; give a token, e.g. $(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    if len(token) > 512:
        return "is longer than 512 characters"
    if not all("!" <= ch <= "~" for ch in token):
        return ("holds a space, a control or a non-ASCII character, which an HTTP header cannot carry; "
                "use letters, digits and punctuation only")
    return None


class Settings(BaseSettings):
    """Everything an operator may tune. Every field is documented; ranges are enforced."""

    model_config = SettingsConfigDict(
        env_prefix="ORIN_",
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    ram_budget_gb: float = Field(
        5.0,
        ge=0.25,
        le=8.0,
        description="Memory the RAM tier (GPU-resident, locked) may use, in GB (default 5, max 8).",
    )
    swap_budget_gb: float = Field(
        10.0,
        ge=0.25,
        le=12.0,
        description="Memory the swap tier (CPU-only, pageable) may use, in GB (default 10, max 12).",
    )
    max_model_gb: float = Field(
        7.0,
        ge=0.01,
        le=8.0,
        description="No model whose predicted footprint exceeds this many GB is admitted at all.",
    )
    reserve_mb: int = Field(
        512,
        ge=0,
        le=4096,
        description="Memory always left free for the OS and the console, in MB (default 512).",
    )
    catalog_path: Path = Field(
        Path("models.toml"),
        description="The model catalog (relative paths are taken from the working directory).",
    )
    model_folders: list[Path] = Field(
        default_factory=lambda: [Path("models")],
        description="Folders the API may add models from (resolved real paths, regular files).",
    )
    state_dir: Path = Field(
        Path.home() / ".local" / "state" / "orin-console",
        description="Where measured memory figures and usage counts are kept between runs.",
    )
    bind_host: str = Field(
        "127.0.0.1",
        description="Address the API binds to. Anything but loopback requires a token.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the API.")
    token: SecretStr | None = Field(
        None,
        description="Bearer token the API requires on every route but health (needed off loopback).",
    )
    theme: str = Field(
        "orin-dark",
        min_length=1,
        max_length=64,
        description="Colour theme of the console (a file name under themes/, without .toml).",
    )
    keymap: dict[str, str] = Field(
        default_factory=dict,
        description="Console keys to remap: a binding id (chat.focus, stop, model.load, "
        "model.unload, model.to_ram, model.to_swap, model.pin, models.add, plan.show, chat.mode, "
        "theme.next, help, quit) to one key or several separated by commas, in Textual's key "
        "names (\"f5\", \"ctrl+l\", \"question_mark\"); e.g. keymap = { \"model.load\" = \"f5\" }.",
    )
    telemetry_source: TelemetrySourceName = Field(
        "auto",
        description="Where gauges come from: auto (jtop, then NVML, then psutil), or one of them.",
    )
    telemetry_interval_s: float = Field(
        1.0,
        ge=0.1,
        le=60.0,
        description="Seconds between telemetry samples (default 1).",
    )
    telemetry_history: int = Field(
        300,
        ge=10,
        le=86400,
        description="Samples kept for sparklines (default 300: five minutes at 1 Hz).",
    )

    on_cold: Literal["load", "resident"] = Field(
        "load",
        description="When auto selection picks a model that is not loaded: load it (through "
        "admission control), or answer with the best model already resident.",
    )
    auto_optimise: bool = Field(
        False,
        description="Apply the usage-based placement plan periodically (off: it is only shown).",
    )
    auto_optimise_interval_s: float = Field(
        300.0,
        ge=10.0,
        le=86400.0,
        description="Seconds between placement-plan rounds of the auto-optimiser (default 300).",
    )
    first_token_timeout_s: float = Field(
        120.0,
        ge=1.0,
        le=86400.0,
        description="The runner watchdog: seconds a generation may wait for its first token "
        "(prompt evaluation included) before its runner is declared stuck and killed. Raise it "
        "for very long prompts on the swap tier.",
    )
    token_gap_timeout_s: float = Field(
        30.0,
        ge=1.0,
        le=86400.0,
        description="The runner watchdog: seconds a generating runner may go without sending "
        "anything (it sends a tick every second while it works) before it is killed as stuck.",
    )
    preload: bool = Field(
        False,
        description="Warm the model usually asked for right after the one that just answered, "
        "when admission says it fits.",
    )

    @field_validator("token")
    @classmethod
    def _token_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        problem = token_problem(value.get_secret_value()) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("catalog_path", "state_dir")
    @classmethod
    def _path_has_no_nul(cls, value: Path) -> Path:
        if "\x00" in str(value):
            raise ValueError("holds a NUL character, which no file name can contain")
        return value

    @field_validator("model_folders")
    @classmethod
    def _folders_have_no_nul(cls, value: list[Path]) -> list[Path]:
        if any("\x00" in str(folder) for folder in value):
            raise ValueError("a folder holds a NUL character, which no file name can contain")
        return value

    @field_validator("theme")
    @classmethod
    def _theme_is_a_name(cls, value: str) -> str:
        if not all(ch.isalnum() or ch in "-_" for ch in value):
            raise ValueError("must contain only letters, digits, '-' and '_'")
        return value

    @field_validator("keymap")
    @classmethod
    def _keymap_is_known(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for binding_id, keys in value.items():
            if binding_id not in CONSOLE_BINDING_IDS:
                problems.append(f"{binding_id!r} is not a console action (known: {', '.join(CONSOLE_BINDING_IDS)})")
                continue
            names = [k.strip() for k in keys.split(",")]
            if not keys.strip() or len(keys) > 100 or not all(
                name and ((len(name) == 1 and name.isprintable()) or set(name) <= _KEY_NAME_CHARS)
                for name in names
            ):
                problems.append(f"{binding_id!r}: {keys!r} is not a key (a single character or a "
                                "key name such as f5, ctrl+l, question_mark; several separated by commas)")
        if problems:
            more = len(problems) - 5
            raise ValueError("; ".join(problems[:5] + ([f"and {more} more"] if more > 0 else [])))
        return value

    @property
    def ram_budget_bytes(self) -> int:
        """The RAM tier budget in bytes."""
        return int(self.ram_budget_gb * GB)

    @property
    def swap_budget_bytes(self) -> int:
        """The swap tier budget in bytes."""
        return int(self.swap_budget_gb * GB)

    @property
    def max_model_bytes(self) -> int:
        """The per-model maximum in bytes."""
        return int(self.max_model_gb * GB)

    @property
    def reserve_bytes(self) -> int:
        """The reserve in bytes."""
        return self.reserve_mb * MB


def _expand(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded; ``~nosuchuser`` is left as it is (not an exception)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def default_config_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the config file is looked for when none is named."""
    env = os.environ if env is None else env
    if env.get("ORIN_CONFIG"):
        return _expand(env["ORIN_CONFIG"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "orin-console" / "config.toml"


OTHER_VARIABLES: tuple[str, ...] = (
    "ORIN_CONFIG", "ORIN_DEBUG", "ORIN_API_URL", "ORIN_TEST_MARK", "ORIN_RUNNER_TEST_HOOKS",
)
"""``ORIN_*`` variables that are no setting but are read elsewhere (the config file's place,
tracebacks, the SDK's server address, the test suite's process mark)."""

OTHER_PREFIXES: tuple[str, ...] = ("ORIN_RUNNER_TEST_",)
"""Families of variables read elsewhere: the runners' test hooks (``ORIN_RUNNER_TEST_HOOKS``,
``..._TOKEN_DELAY_S``, ``..._BALLAST_MB``...)."""


def known_variables() -> tuple[str, ...]:
    """Every ``ORIN_*`` variable the console reads: one per setting, and :data:`OTHER_VARIABLES`."""
    return tuple(f"ORIN_{name.upper()}" for name in Settings.model_fields) + OTHER_VARIABLES


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning for each ``ORIN_*`` variable that the console does not read (a typo such as
    ``ORIN_RAM_BUGDET_GB`` would otherwise be ignored silently), naming the closest known one."""
    env = os.environ if env is None else env
    known = known_variables()
    warnings = []
    for name in sorted(env):
        if not name.upper().startswith("ORIN_") or name.upper() in known or name.upper().startswith(OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        hint = f"did you mean {close[0]}?" if close else "the settings are listed in the README"
        warnings.append(f"{sanitize(name)[:80]} is not a setting and is ignored; {hint}")
    return warnings


class _MappingEnvSource(EnvSettingsSource):
    """``ORIN_*`` variables from a given mapping (``os.environ`` unless a test passes one)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._mapping.items()}


def _describe_errors(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(settings)"
        info = Settings.model_fields.get(str(err["loc"][0])) if err["loc"] else None
        allowed = ""
        if info is not None:
            lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
            hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
            if lo is not None and hi is not None:
                allowed = f" (allowed: {lo} to {hi})"
        shown = "(hidden)" if field == "token" else show_value(err.get("input"))  # a secret stays one
        if err["type"] == "extra_forbidden":  # only the file has keys that are no field
            hint = ("this file looks like a model catalog: give it with --catalog, not --config"
                    if field == "models" else "see the README's settings table")
            lines.append(f"{field} = {shown}: is not a known setting; {hint} [in {origin}]")
            continue
        text = err["msg"].removeprefix("Value error, ")
        msg = text[0].lower() + text[1:]
        lines.append(f"{field} = {shown}: {msg}{allowed} [ORIN_{field.upper()} or {origin}]")
    more = len(lines) - MAX_PROBLEMS
    return "invalid settings: " + "; ".join(lines[:MAX_PROBLEMS] + ([f"and {more} more"] if more > 0 else []))


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from overrides, ``ORIN_*`` variables and the config file.

    Args:
        config_file: the TOML file to read; ``None`` means :func:`default_config_file`.
        env: the environment to read (default: ``os.environ``); tests pass their own.
        **overrides: values that beat every other source.

    Raises:
        SettingsError: a value is out of range or of the wrong type, a key is unknown, or
            the config file is not valid TOML. The message names every bad field and its
            allowed range.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    explicit = config_file is not None and os.fspath(config_file) != ""
    for named in (config_file, environ.get("ORIN_CONFIG")):
        if named is not None and "\x00" in os.fspath(named):
            raise SettingsError(f"the config file name {sanitize_path(named)!r} holds a NUL character, which "
                                "no file name can contain; give the path of a TOML file")
    path = _expand(config_file) if explicit and config_file is not None else default_config_file(environ)

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                _MappingEnvSource(settings_cls, environ),
                TomlFileSource(settings_cls, path, required=explicit),
            )

    try:
        loaded = _Loaded(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe_errors(exc, sanitize_path(path))) from None
    except SourceError as exc:  # a list or table variable that is not JSON
        found = re.search(r'field "([a-z_]+)"', str(exc))
        name = found.group(1) if found else "?"
        example = {"model_folders": '\'["/data/models"]\'', "keymap": '\'{"model.load": "f5"}\''}.get(name, "JSON")
        variable = f"ORIN_{name.upper()}"
        raise SettingsError(f"{variable} = {show_value(environ.get(variable, ''))}: not valid JSON; a list or table "
                            f"setting is given as JSON, e.g. {variable}={example}") from None
    return Settings.model_validate(loaded.model_dump())
