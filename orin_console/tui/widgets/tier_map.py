"""The tier map: each loaded tier as a budget bar with a block per model, the disk tier as a list.

```
RAM  █smollm2███▒qwen 62%░░········ 3.1/5.0G
SWAP ▓▓phi-3▓▓▓▓▓····················┄┄ 2.3/10.0G
DISK gemma3  ✗llama-3.2-1b
█ locked ▒ not locked ▓ pageable ░ loading ▶ busy · free ┄ held  reserve 0.5G
```

Each bar is drawn to the scale of its tier's budget: a model's block is as wide as its memory
(measured once loaded, predicted while loading) and never narrower than one cell, so a tiny
model is still seen. The fill glyph says how the model is resident (the weights locked, asked
for but not locked, pageable, still loading), the colour says its state (theme variables
only: ``$primary`` RAM, ``$secondary`` swap, ``$warning`` loading or moving, ``$success``
busy), and the id is written into the block when it fits. What is left of the budget is free
(``·``) or held (``┄``): held is the part of the budget the machine cannot give now, because
other processes use it or it is the reserve kept back from every load. A tier over its budget
is drawn full, its figure in ``$error``; nothing overflows the bar.

A failed model holds no memory, so it is listed with the disk tier, marked ``✗`` in ``$error``.

The layout arithmetic (:func:`block_widths`, :func:`bar_segments`) is plain functions, tested
without an app.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.binding import BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus, TierUsage
from orin_console.core.text import sanitize
from orin_console.tui.widgets.figures import short_size, size_pair

__all__ = ["Segment", "TierMap", "bar_segments", "block_widths", "model_bytes"]

LABEL_WIDTH = 5
"""``"RAM  "``, ``"SWAP "``, ``"DISK "``."""

GLYPHS: dict[str | None, str] = {"pinned": "█", "resident, not pinned": "▒", "pageable": "▓", None: "░"}
"""Fill glyph per ``ModelStatus.resident`` (None: not resident yet, i.e. loading)."""
FREE_GLYPH = "·"
HELD_GLYPH = "┄"
BUSY_MARK = "▶"
FAILED_MARK = "✗"

LEGEND: tuple[tuple[str, str, str], ...] = (
    # glyph, word, component class (without the ``tier-map--`` prefix)
    ("█", "locked", "ram"),
    ("▒", "not locked", "ram"),
    ("▓", "pageable", "swap"),
    ("░", "loading", "loading"),
    (BUSY_MARK, "busy", "busy"),
    (FAILED_MARK, "failed", "failed"),
    (FREE_GLYPH, "free", "free"),
    (HELD_GLYPH, "held", "held"),
)


@dataclass(frozen=True)
class Segment:
    """One run of cells in a tier bar.

    Attributes:
        kind: ``"model"``, ``"free"`` (budget the machine can give now) or ``"held"`` (budget
            the machine cannot give now: other processes or the reserve).
        cells: its width.
        model: the model, for a ``"model"`` segment.
        in_flight: the model is still loading or moving into this tier.
    """

    kind: str
    cells: int
    model: ModelStatus | None = None
    in_flight: bool = False


def block_widths(sizes: Sequence[int], budget: int, width: int) -> list[int]:
    """Cells per model block on a bar of ``width`` cells that stands for ``budget`` bytes.

    Largest-remainder rounding, so the widths add up to the models' share of the bar; every
    model gets at least one cell while there are cells (paid from the free space); when the
    models hold more than the budget they are scaled to the whole bar, never past it.

    Args:
        sizes: each model's bytes (negative counts as 0).
        budget: bytes the whole bar stands for.
        width: the bar's cells.

    Returns:
        One width per model, adding up to at most ``width``.
    """
    n = len(sizes)
    if n == 0 or width <= 0:
        return [0] * n
    if n >= width:  # one cell each for as many as fit
        return [1] * width + [0] * (n - width)
    clean = [max(0, s) for s in sizes]
    scale = max(budget, sum(clean), 1)
    exact = [s / scale * width for s in clean]
    cells = [max(1, math.floor(e)) for e in exact]
    # A block's one-cell floor is paid from the free space, not taken from the other blocks;
    # only a bar that would overflow takes cells back.
    target = min(width, max(sum(cells), round(sum(exact))))
    while sum(cells) < target:
        i = max(range(n), key=lambda k: (exact[k] - cells[k], -k))
        cells[i] += 1
    while sum(cells) > target:
        shrinkable = [k for k in range(n) if cells[k] > 1]
        i = min(shrinkable, key=lambda k: (exact[k] - cells[k], -k))
        cells[i] -= 1
    return cells


def model_bytes(model: ModelStatus) -> int:
    """What a model's block stands for: measured once loaded, predicted while loading."""
    settled = model.state in (ModelState.READY, ModelState.UNLOADING)
    if settled and model.measured_bytes:
        return model.measured_bytes
    return model.predicted_bytes or model.measured_bytes or 0


def bar_segments(usage: TierUsage, models: Sequence[ModelStatus], width: int,
                 can_give: int | None = None) -> list[Segment]:
    """The segments of one tier bar; their cells add up to exactly ``width``.

    Args:
        usage: the tier's budget and the models holding memory in it.
        models: the statuses of (at least) the models in ``usage.models``.
        width: the bar's cells.
        can_give: bytes the machine could give this tier now (after the reserve); the free
            budget beyond it is drawn as held. None: all free budget is free.
    """
    if width <= 0:
        return []
    by_id = {m.model_id: m for m in models}
    here = [by_id[mid] for mid in usage.models if mid in by_id]
    sizes = [model_bytes(m) for m in here]
    widths = block_widths(sizes, usage.budget, width)
    out = [Segment("model", w, m, m.model_id in usage.in_flight) for m, w in zip(here, widths, strict=True) if w]
    rest = width - sum(widths)
    if rest > 0:
        held = 0
        if can_give is not None and usage.budget > 0:
            blocked = max(0, usage.free - max(0, can_give))
            held = min(rest, round(blocked / usage.budget * width))
        if rest - held:
            out.append(Segment("free", rest - held))
        if held:
            out.append(Segment("held", held))
    return out


def _block_text(model: ModelStatus, in_flight: bool) -> str:
    """The words written into a block: mark, id, progress."""
    text = sanitize(model.model_id)
    if model.busy:
        text = BUSY_MARK + text
    if in_flight and model.progress is not None:
        text += f" {model.progress:.0%}"
    return text


class TierMap(Widget):
    """What is where and how full: the RAM and swap tiers as budget bars, the disk tier as a list.

    Set :attr:`status` (the bridge does, from ``manager.status()`` and the state events);
    the map redraws itself. It has no keys of its own and takes no focus.

    | Key | Description |
    | :- | :- |
    | (none) | The catalog's keys act on the models shown here. |
    """

    BINDINGS: ClassVar[list[BindingType]] = []

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "tier-map--label", "tier-map--ram", "tier-map--swap", "tier-map--loading",
        "tier-map--busy", "tier-map--failed", "tier-map--free", "tier-map--held",
        "tier-map--figure", "tier-map--over", "tier-map--disk", "tier-map--legend",
    }
    """
    | Class | Description |
    | :- | :- |
    | `tier-map--label` | The tier names. |
    | `tier-map--ram` | A ready model in the RAM tier. |
    | `tier-map--swap` | A ready model in the swap tier. |
    | `tier-map--loading` | A model loading or moving into the tier. |
    | `tier-map--busy` | A model generating now. |
    | `tier-map--failed` | A failed model (disk list). |
    | `tier-map--free` | Free budget. |
    | `tier-map--held` | Budget the machine cannot give now. |
    | `tier-map--figure` | The used/budget figure. |
    | `tier-map--over` | The figure of a tier over its budget. |
    | `tier-map--disk` | A model on disk. |
    | `tier-map--legend` | The legend. |
    """

    DEFAULT_CSS = """
    TierMap {
        height: auto;
        padding: 0 1;
        & > .tier-map--label { color: $foreground; text-style: bold; }
        & > .tier-map--ram { color: $primary; }
        & > .tier-map--swap { color: $secondary; }
        & > .tier-map--loading { color: $warning; }
        & > .tier-map--busy { color: $success; }
        & > .tier-map--failed { color: $error; }
        & > .tier-map--free { color: $foreground-muted; }
        & > .tier-map--held { color: $error-muted; }
        & > .tier-map--figure { color: $foreground; }
        & > .tier-map--over { color: $error; text-style: bold; }
        & > .tier-map--disk { color: $foreground-muted; }
        & > .tier-map--legend { color: $foreground-muted; }
    }
    """

    status: reactive[SystemStatus | None] = reactive(None)
    """The system status to draw (None: nothing known yet). A repaint; a layout only when the
    number of lines changes (:meth:`watch_status`)."""
    show_legend: reactive[bool] = reactive(True, layout=True)
    """Whether the glyph legend and the reserve are shown under the bars."""

    def __init__(self, status: SystemStatus | None = None, *, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        """A tier map.

        Args:
            status: the first status to draw.
            name: the widget's name.
            id: the widget's id in the DOM.
            classes: space-separated CSS classes.
        """
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(TierMap.status, status)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(width))

    def watch_status(self) -> None:
        # The bridge sets a new status up to five times a second, and a layout reflows and
        # repaints the whole screen (issue 9's event-loop stall): only when the height changes.
        width, height = self.content_size
        if not width or len(self._lines(width)) != height:
            self.refresh(layout=True)

    def render(self) -> RenderResult:
        lines = self._lines(self.content_region.width or self.size.width)
        return Text("\n", no_wrap=True, overflow="crop").join(lines)

    # -- drawing ------------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"tier-map--{name}", partial=True)

    def _lines(self, width: int) -> list[Text]:
        status = self.status
        if status is None:
            return [Text("Tiers: waiting for the manager…", style=self._style("disk"))]
        tiers = [t for t in status.tiers if t.budget > 0 or t.models]
        figures = {t.tier: size_pair(t.used, t.budget) for t in tiers}
        fig_width = max((len(f) for f in figures.values()), default=0)
        bar_width = max(1, width - LABEL_WIDTH - fig_width - 1)
        lines = [self._bar_line(t, status, bar_width, figures[t.tier].rjust(fig_width)) for t in tiers]
        lines.extend(self._disk_lines(status, width))
        if self.show_legend:
            lines.extend(self._legend_lines(status, width))
        return lines

    def _bar_line(self, usage: TierUsage, status: SystemStatus, bar_width: int, figure: str) -> Text:
        can_give = status.mem_available - status.reserve
        if usage.tier != "ram":
            can_give += status.swap_free
        line = Text(usage.tier.upper().ljust(LABEL_WIDTH), style=self._style("label"))
        for seg in bar_segments(usage, status.models, bar_width, can_give):
            if seg.kind != "model" or seg.model is None:
                glyph = FREE_GLYPH if seg.kind == "free" else HELD_GLYPH
                line.append(glyph * seg.cells, self._style(seg.kind))
                continue
            self._append_block(line, seg, usage.tier)
        over = usage.used > usage.budget
        line.append(" ")
        line.append(figure, self._style("over" if over else "figure"))
        return line

    def _append_block(self, line: Text, seg: Segment, tier: str) -> None:
        model = seg.model
        assert model is not None
        if seg.in_flight or (model.state in (ModelState.LOADING, ModelState.MOVING) and model.tier != tier):
            style, glyph = self._style("loading"), GLYPHS[None]
        else:
            style = self._style("busy" if model.busy else ("ram" if tier == "ram" else "swap"))
            glyph = GLYPHS.get(model.resident, GLYPHS[None])
        label = _block_text(model, seg.in_flight)
        n = seg.cells
        if n >= len(label) + 1:
            line.append(glyph, style)
            line.append(label, style + Style(reverse=True, bold=True))
            line.append(glyph * (n - 1 - len(label)), style)
        elif n >= len(label):
            line.append(label, style + Style(reverse=True, bold=True))
        elif n >= 3:
            line.append(label[: n - 1] + "…", style + Style(reverse=True, bold=True))
        elif model.busy:
            line.append(BUSY_MARK + glyph * (n - 1), style)
        else:
            line.append(glyph * n, style)

    def _disk_lines(self, status: SystemStatus, width: int) -> list[Text]:
        placed = {mid for t in status.tiers for mid in t.models}
        on_disk = [m for m in status.models if m.model_id not in placed]
        lines: list[Text] = []
        line = Text("DISK".ljust(LABEL_WIDTH), style=self._style("label"))
        if not on_disk:
            line.append("—", self._style("disk"))
        for m in on_disk:
            failed = m.state is ModelState.FAILED
            word = (FAILED_MARK if failed else "") + sanitize(m.model_id)
            if line.cell_len > LABEL_WIDTH and line.cell_len + 2 + len(word) > width:
                lines.append(line)
                line = Text(" " * LABEL_WIDTH)
            if line.cell_len > LABEL_WIDTH:
                line.append("  ")
            line.append(word, self._style("failed" if failed else "disk"))
        lines.append(line)
        return lines

    def _legend_lines(self, status: SystemStatus, width: int) -> list[Text]:
        items = [Text.assemble((glyph, self._style(cls)), (" " + word, self._style("legend")))
                 for glyph, word, cls in LEGEND]
        items.append(Text(f"reserve {short_size(status.reserve)}", style=self._style("legend")))
        lines: list[Text] = []
        line = Text()
        for item in items:
            if line.cell_len and line.cell_len + 1 + item.cell_len > width:
                lines.append(line)
                line = Text()
            if line.cell_len:
                line.append(" ")
            line.append_text(item)
        lines.append(line)
        return lines
