"""The machine's gauges: one header line (:class:`GaugeBar`) and a pane with sparklines
(:class:`GaugesPane`), both drawn from telemetry :class:`~orin_console.core.telemetry.Sample`\\ s.

```
jtop 14:02  RAM 5.1/7.4G ▂▃▅▆▇  SWP 2.3/11.0G  GPU 38% 52°C 7.4W  CPU 23%
psutil 14:02 stale 12s  RAM 6.2/16.0G  SWP 0.0/2.0G  CPU 8%
```

The source is always named. A field the source does not give is left out, never shown as
zero. A sample older than its ``stale_after_s`` is marked ``stale Ns`` in ``$error`` (the age
is read from an injectable monotonic clock, so tests are deterministic). When the line is too
narrow, the least important fields are dropped whole (CPU, then power, temperature, the
sparkline) rather than cut in the middle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.binding import BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from orin_console.core.telemetry import Sample
from orin_console.core.text import sanitize
from orin_console.tui.widgets.figures import short_size, size_pair

__all__ = ["GaugeBar", "GaugesPane", "Row", "gauge_rows", "pick_temperature", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"
TEMPERATURE_KEYS = ("gpu", "tj", "cpu", "soc0")
"""The temperature shown on the line: the GPU's where the source has it, else the hottest
junction, else the CPU's, else the highest reading."""

Clock = Callable[[], float]


def pick_temperature(temperatures: Mapping[str, float]) -> tuple[str, float] | None:
    """The one temperature for a short line, as ``(sensor, degrees)``; None when there is none."""
    temps = dict(temperatures)
    for key in TEMPERATURE_KEYS:
        if key in temps:
            return key, temps[key]
    if not temps:
        return None
    key = max(temps, key=lambda k: temps[k])
    return sanitize(str(key)), temps[key]


def sparkline(values: Sequence[float | None], width: int, top: float | None = None) -> str:
    """The last ``width`` values as bar glyphs (``▁`` to ``█``); a missing value is a space.

    Args:
        values: oldest first.
        width: cells.
        top: the value drawn as a full bar (a percentage's 100, a memory total); by default
            the largest value shown.
    """
    if width <= 0:
        return ""
    shown = list(values)[-width:]
    known = [v for v in shown if v is not None]
    peak = top if top else (max(known) if known else 0.0)
    out = []
    for v in shown:
        if v is None:
            out.append(" ")
        elif peak <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, max(0, round(v / peak * (len(BARS) - 1))))])
    return "".join(out)


def staleness(sample: Sample, now: float) -> str | None:
    """``"stale 12s"`` when the sample is stale at ``now`` (monotonic), else None."""
    if not sample.is_stale(now):
        return None
    return f"stale {sample.age(now):.0f}s"


@dataclass(frozen=True)
class Row:
    """One gauge of the pane.

    Attributes:
        label: ``RAM``, ``SWAP``, ``CPU``, ``GPU``, ``EMC``, ``TEMP``, ``POWER``.
        value: the latest reading as text (``"5.1/7.4G"``).
        series: the history of the figure the sparkline draws, oldest first.
        top: the value of a full sparkline bar (None: the largest shown).
        detail: more about the reading, shown when there is room (``"GPU-shared 1.0G"``).
    """

    label: str
    value: str
    series: tuple[float | None, ...]
    top: float | None = None
    detail: str = ""


def gauge_rows(history: Sequence[Sample]) -> list[Row]:
    """The gauges the latest sample has, each with its history; fields it lacks give no row."""
    if not history:
        return []
    s = history[-1]
    rows: list[Row] = []
    if s.mem_used is not None and s.mem_total:
        detail = f"GPU-shared {short_size(s.mem_gpu_shared)}" if s.mem_gpu_shared is not None else ""
        if s.mem_available is not None:
            detail = (detail + "  " if detail else "") + f"avail {short_size(s.mem_available)}"
        rows.append(Row("RAM", size_pair(s.mem_used, s.mem_total), tuple(h.mem_used for h in history),
                        float(s.mem_total), detail))
    if s.swap_used is not None and s.swap_total:
        rows.append(Row("SWAP", size_pair(s.swap_used, s.swap_total), tuple(h.swap_used for h in history),
                        float(s.swap_total)))
    if s.cpu_percent is not None:
        rows.append(Row("CPU", f"{s.cpu_percent:.0f}%", tuple(h.cpu_percent for h in history), 100.0))
    if s.gpu_load is not None:
        detail = f"{s.gpu_freq_hz / 1e6:.0f} MHz" if s.gpu_freq_hz else ""
        rows.append(Row("GPU", f"{s.gpu_load:.0f}%", tuple(h.gpu_load for h in history), 100.0, detail))
    if s.gpu_mem_used is not None and s.gpu_mem_total:
        rows.append(Row("VRAM", size_pair(s.gpu_mem_used, s.gpu_mem_total),
                        tuple(h.gpu_mem_used for h in history), float(s.gpu_mem_total)))
    if s.emc_load is not None:
        rows.append(Row("EMC", f"{s.emc_load:.0f}%", tuple(h.emc_load for h in history), 100.0))
    temp = pick_temperature(s.temperatures)
    if temp is not None:
        key = temp[0]
        rows.append(Row("TEMP", f"{temp[1]:.0f}°C",
                        tuple(h.temperatures.get(key) for h in history), 100.0, key))
    if s.power_w is not None:
        rows.append(Row("POWER", f"{s.power_w:.1f}W", tuple(h.power_w for h in history),
                        None, sanitize(s.nvpmodel or "")))
    return rows


class _SampleClock(Widget):
    """What both gauge widgets share: a monotonic clock and a once-a-second staleness check."""

    def __init__(self, *, clock: Clock = time.monotonic, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._clock = clock
        self._stale_text: str | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self._check_stale, name="gauge staleness")

    def _latest(self) -> Sample | None:
        raise NotImplementedError

    def _check_stale(self) -> None:
        """Repaint only when the staleness mark would change (no repaint while fresh)."""
        latest = self._latest()
        text = staleness(latest, self._clock()) if latest is not None else None
        if text != self._stale_text:
            self.refresh()

    def _stale_now(self, sample: Sample) -> str | None:
        self._stale_text = staleness(sample, self._clock())
        return self._stale_text


class GaugeBar(_SampleClock):
    """The gauges in one line, for the header at 80x24.

    | Key | Description |
    | :- | :- |
    | (none) | The gauges take no focus. |
    """

    BINDINGS: ClassVar[list[BindingType]] = []

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "gauge-bar--source", "gauge-bar--label", "gauge-bar--value", "gauge-bar--spark",
        "gauge-bar--stale", "gauge-bar--note",
    }
    """
    | Class | Description |
    | :- | :- |
    | `gauge-bar--source` | The source's name and the sample's time. |
    | `gauge-bar--label` | RAM, SWP, GPU, CPU. |
    | `gauge-bar--value` | The readings. |
    | `gauge-bar--spark` | The RAM sparkline. |
    | `gauge-bar--stale` | The stale mark. |
    | `gauge-bar--note` | The source note (why a fallback happened). |
    """

    DEFAULT_CSS = """
    GaugeBar {
        height: 1;
        & > .gauge-bar--source { color: $accent; text-style: bold; }
        & > .gauge-bar--label { color: $foreground-muted; }
        & > .gauge-bar--value { color: $foreground; }
        & > .gauge-bar--spark { color: $primary; }
        & > .gauge-bar--stale { color: $error; text-style: bold; }
        & > .gauge-bar--note { color: $warning; }
    }
    """

    sample: reactive[Sample | None] = reactive(None)
    """The latest telemetry sample (None: none yet)."""
    source_note: reactive[str] = reactive("")
    """A short note about the source (the bridge sets it when telemetry falls back); sanitised here."""
    history: reactive[tuple[Sample, ...]] = reactive(())
    """Recent samples, oldest first, for the RAM sparkline (optional)."""
    spark_width: reactive[int] = reactive(5)
    """Cells of the RAM sparkline (0: none)."""

    def _latest(self) -> Sample | None:
        return self.sample

    def render(self) -> RenderResult:
        return self.line(self.content_region.width or self.size.width)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"gauge-bar--{name}", partial=True)

    def line(self, width: int) -> Text:
        """The gauge line for ``width`` cells: the most important fields that fit."""
        s = self.sample
        if s is None:
            return Text("telemetry: waiting for the first sample…", style=self._style("label"))
        head = Text.assemble((sanitize(s.source), self._style("source")), " ",
                             (time.strftime("%H:%M", time.localtime(s.wall)), self._style("label")))
        stale = self._stale_now(s)
        if stale:
            head.append(" " + stale, self._style("stale"))
        # (priority, text): lower numbers are kept longer
        parts: list[tuple[int, Text]] = []
        if s.mem_used is not None and s.mem_total:
            parts.append((0, self._field("RAM", size_pair(s.mem_used, s.mem_total))))
            series = [h.mem_used for h in self.history]
            if self.spark_width and len(series) > 1:
                parts.append((4, Text(sparkline(series, self.spark_width, s.mem_total), self._style("spark"))))
        if s.swap_used is not None and s.swap_total:
            parts.append((1, self._field("SWP", size_pair(s.swap_used, s.swap_total))))
        if s.gpu_load is not None:
            parts.append((2, self._field("GPU", f"{s.gpu_load:.0f}%")))
        temp = pick_temperature(s.temperatures)
        if temp is not None:
            parts.append((5, Text(f"{temp[1]:.0f}°C", self._style("value"))))
        if s.power_w is not None:
            parts.append((6, Text(f"{s.power_w:.0f}W" if s.power_w >= 10 else f"{s.power_w:.1f}W",
                                  self._style("value"))))
        if s.cpu_percent is not None:
            parts.append((3, self._field("CPU", f"{s.cpu_percent:.0f}%")))
        if self.source_note:
            parts.append((7, Text(sanitize(self.source_note), self._style("note"))))
        kept = list(parts)
        while kept and self._width(head, kept) > width:
            kept.remove(max(kept, key=lambda p: p[0]))
        room = width - self._width(head, kept) - 2
        if self.source_note and room >= 12 and not any(p[0] == 7 for p in kept):
            note = sanitize(self.source_note)  # a long note is cut rather than lost
            kept.append((7, Text(note[: room - 1] + "…", self._style("note"))))
        out = head
        for i, (_, text) in enumerate(kept):
            glue = " " if i and self._glued(kept[i - 1][1], text) else "  "
            out.append(glue)
            out.append_text(text)
        out.truncate(width)
        return out

    def _field(self, label: str, value: str) -> Text:
        return Text.assemble((label, self._style("label")), " ", (value, self._style("value")))

    @staticmethod
    def _glued(before: Text, text: Text) -> bool:
        """A sparkline follows its figure and the GPU's temperature and power follow its load
        with one space, not two."""
        first = text.plain[:1]
        return first in BARS or first.isdigit()

    def _width(self, head: Text, parts: list[tuple[int, Text]]) -> int:
        total = head.cell_len
        for i, (_, text) in enumerate(parts):
            total += (1 if i and self._glued(parts[i - 1][1], text) else 2) + text.cell_len
        return total


class GaugesPane(_SampleClock):
    """The gauges with history: one row per reading the source gives, each with a sparkline.

    | Key | Description |
    | :- | :- |
    | (none) | The gauges take no focus. |
    """

    BINDINGS: ClassVar[list[BindingType]] = []

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "gauges-pane--source", "gauges-pane--label", "gauges-pane--value", "gauges-pane--spark",
        "gauges-pane--detail", "gauges-pane--stale", "gauges-pane--note",
    }
    """
    | Class | Description |
    | :- | :- |
    | `gauges-pane--source` | The source line. |
    | `gauges-pane--label` | The gauge names. |
    | `gauges-pane--value` | The latest readings. |
    | `gauges-pane--spark` | The sparklines. |
    | `gauges-pane--detail` | Extra facts (GPU-shared RAM, clock, sensor). |
    | `gauges-pane--stale` | The stale mark. |
    | `gauges-pane--note` | The source note. |
    """

    DEFAULT_CSS = """
    GaugesPane {
        height: auto;
        padding: 0 1;
        & > .gauges-pane--source { color: $accent; text-style: bold; }
        & > .gauges-pane--label { color: $foreground-muted; }
        & > .gauges-pane--value { color: $foreground; text-style: bold; }
        & > .gauges-pane--spark { color: $primary; }
        & > .gauges-pane--detail { color: $foreground-muted; }
        & > .gauges-pane--stale { color: $error; text-style: bold; }
        & > .gauges-pane--note { color: $warning; }
    }
    """

    LABEL_WIDTH = 6
    VALUE_WIDTH = 11

    history: reactive[tuple[Sample, ...]] = reactive((), layout=True)
    """Recent samples, oldest first; the last is the reading shown."""
    source_note: reactive[str] = reactive("", layout=True)
    """A short note about the source (why it fell back, the fix); sanitised here."""

    def _latest(self) -> Sample | None:
        return self.history[-1] if self.history else None

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"gauges-pane--{name}", partial=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> RenderResult:
        return Text("\n", no_wrap=True, overflow="crop").join(self._lines(self.content_region.width or self.size.width))

    def _lines(self, width: int) -> list[Text]:
        latest = self._latest()
        if latest is None:
            return [Text("telemetry: waiting for the first sample…", style=self._style("detail"))]
        head = Text.assemble((sanitize(latest.source), self._style("source")), " ",
                             (time.strftime("%H:%M:%S", time.localtime(latest.wall)), self._style("detail")))
        stale = self._stale_now(latest)
        if stale:
            head.append("  " + stale, self._style("stale"))
        lines = [head]
        if self.source_note:
            lines.append(Text(sanitize(self.source_note), self._style("note")))
        for row in gauge_rows(self.history):
            line = Text.assemble((row.label.ljust(self.LABEL_WIDTH), self._style("label")),
                                 (row.value.ljust(self.VALUE_WIDTH), self._style("value")))
            spark_cells = width - line.cell_len - 1
            detail = f" {row.detail}" if row.detail else ""
            if detail and spark_cells - len(detail) >= 8:
                spark_cells -= len(detail)
            else:
                detail = ""
            if spark_cells > 0:
                line.append(" ")
                line.append(sparkline(row.series, spark_cells, row.top).rjust(spark_cells), self._style("spark"))
            line.append(detail, self._style("detail"))
            lines.append(line)
        return lines
