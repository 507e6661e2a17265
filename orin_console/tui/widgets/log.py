"""LogPane: what happened, one line per event, newest at the bottom; also a log file."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import RichLog

from orin_console.core.text import sanitize

LEVELS = ("info", "warning", "error")
_MARK = {"info": "·", "warning": "!", "error": "✗"}
_FILE_LIMIT = 5 * 1024 * 1024
"""At this size ``console.log`` is rotated to ``console.log.1`` (one old file kept)."""


class LogPane(RichLog):
    """The console's log: load progress, itemised refusals, runner crashes with their reason,
    telemetry fallbacks and plan changes.

    Every line is sanitised (no control characters, no markup: it is drawn as plain
    :class:`~rich.text.Text`), coloured by level from theme variables, and appended to
    ``log_path`` with a full timestamp (rotated at 5 MB). A log file that cannot be written
    is reported once in the pane; the pane goes on.

    | Key | Action | Description |
    | :- | :- | :- |
    | end | `scroll_end` | Back to the newest line. |

    Args:
        log_path: the log file (None: the pane only).
        clock: wall-clock seconds for the timestamps (tests pass a fixed one).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "scroll_end", "Newest", show=False, id="log.newest"),
    ]

    DEFAULT_CSS = """
    LogPane {
        background: $surface;
        color: $text;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
        &:focus { background-tint: $foreground 5%; }
        & > .log-pane--info { color: $text; }
        & > .log-pane--warning { color: $warning; }
        & > .log-pane--error { color: $error; text-style: bold; }
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"log-pane--info", "log-pane--warning", "log-pane--error"}

    lines_written: reactive[int] = reactive(0, layout=False)
    """How many lines were written since start (the pane keeps the last ``max_lines``)."""

    def __init__(self, *, log_path: Path | None = None, clock: Callable[[], float] = time.time,
                 max_lines: int = 500, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(max_lines=max_lines, min_width=20, wrap=True, markup=False, highlight=False,
                         auto_scroll=True, name=name, id=id, classes=classes)
        self.log_path = log_path
        self._clock = clock
        self._file: IO[str] | None = None
        self._file_failed = False
        self.history: list[tuple[str, str]] = []
        """Every (level, text) written, oldest first (for tests and the help screen)."""

    def write_event(self, level: str, text: str) -> None:
        """Add one line (and append it to the log file).

        Args:
            level: ``info``, ``warning`` or ``error`` (anything else counts as info).
            text: the line; sanitised here, never read as markup.
        """
        level = level if level in LEVELS else "info"
        clean = sanitize(text, multiline=False)
        now = self._clock()
        self.history.append((level, clean))
        del self.history[:-2000]
        line = Text(f"{datetime.fromtimestamp(now).strftime('%H:%M:%S')} {_MARK[level]} ")
        line.append(clean, style=self.get_component_rich_style(f"log-pane--{level}", partial=True)
                    if level != "info" else "")
        self.write(line)
        self.lines_written += 1
        self._append_file(now, level, clean)

    def _append_file(self, now: float, level: str, clean: str) -> None:
        if self.log_path is None or self._file_failed:
            return
        try:
            if self._file is None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.log_path.open("a", encoding="utf-8")
            stamp = datetime.fromtimestamp(now).isoformat(timespec="milliseconds")
            self._file.write(f"{stamp} {level.upper():<7} {clean}\n")
            self._file.flush()
            if self._file.tell() > _FILE_LIMIT:
                self._file.close()
                self._file = None
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        except OSError as exc:
            self._file_failed = True
            self.write(Text(f"log file {sanitize(str(self.log_path))} not written: {sanitize(str(exc))}"))

    def close_file(self) -> None:
        """Close the log file (also done when the pane is unmounted)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def on_unmount(self) -> None:
        self.close_file()
