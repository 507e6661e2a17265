"""Fixed data for the console widgets' tests: statuses, samples and an app that mounts one widget.

Every figure is fixed, so a snapshot drawn from it is the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.widget import Widget

from orin_console.core.manager.types import ModelState, ModelStatus, SystemStatus, TierUsage
from orin_console.core.units import GB, MB
from orin_console.testing.telemetry_fakes import make_sample

NOW = 100.0
"""The fixed monotonic "now" of the gauge tests."""


def model(model_id: str, state: ModelState = ModelState.READY, tier: str = "ram", **fields: Any) -> ModelStatus:
    return ModelStatus(model_id=model_id, state=state, tier=tier, **fields)


def six_states() -> tuple[ModelStatus, ...]:
    """A loading, a ready (pinned: weights locked), a busy, a failed, a resident-not-pinned
    model and one on disk."""
    return (
        model("smollm2", resident="pinned", predicted_bytes=300 * MB, measured_bytes=279 * MB,
              preferred_tier="ram", pin=True),
        model("qwen-coder", ModelState.LOADING, "disk", target_tier="ram", progress=0.62,
              predicted_bytes=int(1.4 * GB), preferred_tier="ram"),
        model("phi-3", resident="pageable", tier="swap", predicted_bytes=int(2.2 * GB),
              measured_bytes=int(2.1 * GB), busy=True, queued=1),
        model("tinyllama", resident="resident, not pinned", predicted_bytes=int(0.7 * GB),
              measured_bytes=int(0.65 * GB), preferred_tier="ram",
              notes=("weights not locked: RLIMIT_MEMLOCK is 64 KB; run `ulimit -l unlimited`",)),
        model("llama-3.2-1b", ModelState.FAILED, "disk", predicted_bytes=int(1.1 * GB),
              error="runner died: SIGKILL (out of memory?)\x1b[2J stderr: ggml_abort"),
        model("gemma3", ModelState.UNLOADED, "disk", predicted_bytes=456 * MB, preferred_tier="swap"),
    )


def six_state_status() -> SystemStatus:
    models = six_states()
    ram_used = 300 * MB + int(1.4 * GB) + int(0.7 * GB)
    return SystemStatus(
        models=models,
        tiers=(
            TierUsage("ram", 5 * GB, ram_used, ("smollm2", "qwen-coder", "tinyllama"), ("qwen-coder",)),
            TierUsage("swap", 10 * GB, int(2.2 * GB), ("phi-3",)),
        ),
        mem_available=int(4.5 * GB), swap_free=int(9 * GB), reserve=512 * MB,
    )


def jtop_sample(mono: float = NOW - 0.4, **overrides: Any) -> Any:
    fields: dict[str, Any] = dict(
        mem_total=int(7.4 * GB), mem_used=int(5.1 * GB), mem_available=int(2.0 * GB),
        mem_gpu_shared=int(1.0 * GB), swap_total=11 * GB, swap_used=int(2.3 * GB),
        cpu_percent=23.0, gpu_load=38.0, gpu_freq_hz=612_000_000,
        temperatures={"cpu": 48.5, "gpu": 52.0, "tj": 52.4}, power_w=7.4, emc_load=23.0,
        nvpmodel="15W",
    )
    fields.update(overrides)
    return make_sample("jtop", mono=mono, **fields)


def stale_psutil_sample(mono: float = NOW - 12.0) -> Any:
    return make_sample("psutil", mono=mono, mem_total=16 * GB, mem_used=int(6.2 * GB),
                       mem_available=int(9.0 * GB), swap_total=2 * GB, swap_used=0, cpu_percent=7.5)


class WidgetApp(App[None]):
    """Mounts one widget, full screen; ``setup`` runs once it is mounted."""

    CSS = "Screen { layout: vertical; }"

    def __init__(self, make: Callable[[], Widget], setup: Callable[[Any], None] | None = None) -> None:
        super().__init__()
        self._make = make
        self._setup = setup
        self.widget: Any = None

    def compose(self) -> ComposeResult:
        self.widget = self._make()
        yield self.widget

    def on_mount(self) -> None:
        if self._setup is not None:
            self._setup(self.widget)
