"""The settings' config file: read bounded, parsed as TOML, each value's type checked strictly
against its setting (``port = true`` and ``ram_budget_gb = "4"`` are refused with their line,
not coerced); a missing file contributes nothing unless it was named explicitly.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from orin_console.core.errors import SettingsError
from orin_console.core.files import CONFIG_FILE_LIMIT, read_text_file
from orin_console.core.text import sanitize, sanitize_path

MAX_PROBLEMS = 20
"""Problems named in one refusal; the rest are counted."""


def show_value(value: Any) -> str:
    """A value for a message: its repr (a path as text), sanitised and cut to 80 characters."""
    text = sanitize(repr(str(value) if isinstance(value, Path) else value))
    return text if len(text) <= 80 else text[:77] + "..."


def _line_of(text: str, key: str) -> str:
    found = re.search(rf'^[ \t]*"?{re.escape(key)}"?[ \t]*=', text, re.MULTILINE)
    return f" (line {text.count(chr(10), 0, found.start()) + 1})" if found else ""


def _expected(annotation: Any) -> tuple[tuple[type, ...], str] | None:
    """The TOML value types a setting accepts from the file, and how to say it."""
    if annotation is bool:
        return (bool,), "true or false without quotes"
    if annotation is int:
        return (int,), "a whole number without quotes"
    if annotation is float:
        return (int, float), "a number without quotes"
    if annotation in (str, Path) or str(annotation).startswith(("typing.Literal", "pydantic.types.SecretStr")):
        return (str,), "text in double quotes"
    if str(annotation).startswith("list["):
        return (list,), 'a list such as ["/data/models"]'
    if str(annotation).startswith("dict["):
        return (dict,), 'a table such as { "model.load" = "f5" }'
    return None


def check_file_types(data: dict[str, Any], text: str, path: Path, fields: Mapping[str, FieldInfo]) -> None:
    """Refuse a value of the wrong TOML type (``port = true``, ``ram_budget_gb = "4"``)."""
    problems: list[str] = []
    for key, value in data.items():
        info = fields.get(key)
        rule = _expected(info.annotation) if info is not None else None
        if rule is None:
            continue
        types, wanted = rule
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            where = _line_of(text, key) if len(problems) < MAX_PROBLEMS else ""
            problems.append(f"{key} = {show_value(value)}{where}: expected {wanted}")
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS] + ([f"and {more} more"] if more > 0 else [])
        raise SettingsError(f"{sanitize_path(path)}: invalid settings: " + "; ".join(shown))


class TomlFileSource(PydanticBaseSettingsSource):
    """Reads the flat TOML config file; a missing file contributes nothing unless ``required``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, *, required: bool = False) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.required = required

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole mapping at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        try:
            text = read_text_file(
                self.path, limit_bytes=CONFIG_FILE_LIMIT, what="config file", error=SettingsError
            )
        except FileNotFoundError:
            if self.required:
                raise SettingsError(f"{sanitize_path(self.path)}: the config file named by --config does not "
                                    "exist; check the path, or leave --config out for the defaults") from None
            return {}
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(
                f"{sanitize_path(self.path)}: cannot read the config file: not valid TOML: {sanitize(str(exc))}"
            ) from None
        except RecursionError:
            raise SettingsError(
                f"{sanitize_path(self.path)}: cannot read the config file: arrays or tables nested too deeply "
                "(settings need at most two levels); fix or remove the nested value"
            ) from None
        check_file_types(data, text, self.path, self.settings_cls.model_fields)
        return data
