"""Typed errors raised by the core. Front ends turn them into one-line messages."""

from __future__ import annotations

from orin_console.core.text import sanitize_path


class OrinError(Exception):
    """Base class of every error the core raises on purpose.

    The message is written for an operator: it names the problem and, where there is one,
    the fix.
    """


class GGUFError(OrinError):
    """A file is not a GGUF our bounded reader accepts.

    Attributes:
        field: the header field, metadata key or tensor that is wrong (e.g. ``"n_tensors"``,
            ``"general.architecture"``, ``"tensor[3].offset"``).
        reason: what is wrong with it.
        path: the file, when known, as the user gave it (shown sanitised in the message).
    """

    def __init__(self, field: str, reason: str, path: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.path = path
        where = f"{sanitize_path(path)}: " if path else ""
        super().__init__(f"{where}invalid GGUF: {field}: {reason}")


class CatalogError(OrinError):
    """The catalog file (models.toml) is invalid or an edit to it was refused."""


class SettingsError(OrinError):
    """The settings (config file or ORIN_* environment variables) are invalid."""


class DemoModelError(OrinError):
    """A demo model could not be fetched, reassembled or verified."""
