"""Themes as data: every ``themes/*.toml`` file becomes a :class:`textual.theme.Theme`.

A theme file holds the fields of a Textual ``Theme`` (see ``themes/README.md``). The console
registers every file it finds at start-up; the ``theme`` setting picks the first one shown and
``t`` cycles through them in name order. A broken file is skipped with its reason (the console
logs it), never a crash.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from textual.theme import Theme

from orin_console.core.errors import OrinError
from orin_console.core.files import read_text_file
from orin_console.core.text import sanitize, sanitize_path

THEMES_DIR = Path(__file__).resolve().parents[2] / "themes"
"""The repository's ``themes/`` folder."""

DEFAULT_THEME = "orin-dark"
_FIELDS = frozenset(f.name for f in fields(Theme))
_THEME_FILE_LIMIT = 64 * 1024


def load_theme(path: Path) -> Theme:
    """One theme file as a ``Theme``.

    Raises:
        ValueError: the file is unreadable, not TOML, or has unknown or missing fields; the
            message names the file and the problem.
    """
    where = sanitize_path(path)
    try:
        data = tomllib.loads(read_text_file(path, limit_bytes=_THEME_FILE_LIMIT, what="theme file"))
    except (OSError, OrinError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{where}: {sanitize(str(exc))}") from None
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown theme fields {', '.join(map(sanitize, unknown))}")
    data.setdefault("name", path.stem)
    try:
        return Theme(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {sanitize(str(exc))}") from None


def load_themes(folder: Path = THEMES_DIR) -> tuple[list[Theme], list[str]]:
    """Every ``*.toml`` theme in ``folder`` (by name), and the problems of those skipped."""
    themes: list[Theme] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            themes.append(load_theme(path))
        except ValueError as exc:
            problems.append(str(exc))
    return sorted(themes, key=lambda t: t.name), problems
