"""The README's screenshot of the console: ``docs/console.svg`` (100x30).

The console over the bundled demo catalog (``models.toml``; tiny generated models in a
scratch folder when the demo models are not fetched), with fixed, Jetson-like telemetry
(jtop figures and a history for the sparklines), one model loaded for real and one answer
in the chat pane. Text and layout are the console's own; the answer and its figures (TTFT,
tok/s) are whatever this machine produced (greedy sampling, a fixed seed).

    .venv/bin/python scripts/screenshot.py [--out docs/console.svg] [--size 100x30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Write a haiku about swap space."
FIXED_WALL = 1_700_000_000.0


def _catalog(scratch: Path) -> tuple[Path, str]:
    """The demo catalog when its models are there, else two tiny generated models."""
    demo = ROOT / "models.toml"
    if (ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        return demo, "smollm2"
    from orin_console.testing.tiny_models import write_tiny_llama

    write_tiny_llama(scratch / "alpha.gguf", n_ctx=512, ascii_output=True)
    write_tiny_llama(scratch / "beta.gguf", seed=7, n_ctx=512, ascii_output=True)
    catalog = scratch / "models.toml"
    catalog.write_text('[[models]]\nid = "alpha"\npath = "alpha.gguf"\ntasks = ["chat"]\ntier = "ram"\n'
                       'context = 512\n\n[[models]]\nid = "beta"\npath = "beta.gguf"\ntasks = ["code"]\n'
                       'tier = "swap"\ncontext = 512\n')
    return catalog, "alpha"


def _telemetry(now: float) -> tuple[Any, tuple[Any, ...]]:
    """A fixed jtop sample (an Orin Nano's figures) and 30 s of history."""
    from orin_console.core.telemetry import Sample
    from orin_console.core.units import GB

    def sample(i: int) -> Sample:
        return Sample(source="jtop", mono=now - 0.4 - (29 - i), wall=FIXED_WALL - (29 - i),
                      mem_total=int(7.4 * GB), mem_used=int((3.6 + (i % 10) / 12) * GB),
                      mem_available=int(3.0 * GB), mem_gpu_shared=int(0.4 * GB), swap_total=11 * GB,
                      swap_used=int(1.2 * GB), cpu_percent=18.0 + (i * 7) % 40, gpu_load=20.0 + (i * 11) % 60,
                      gpu_freq_hz=612_000_000, temperatures={"cpu": 47.5, "gpu": 49.0, "tj": 49.6},
                      power_w=6.8, emc_load=21.0, nvpmodel="15W")

    history = tuple(sample(i) for i in range(30))
    return history[-1], history


class _FixedTelemetry:
    """Stands in for the sampler: the gauges show :func:`_telemetry`'s samples, not this
    machine's (and the console does not log "telemetry off")."""

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console.svg")
    parser.add_argument("--size", default="100x30", help="COLUMNSxROWS (default 100x30)")
    args = parser.parse_args()
    columns, rows = (int(n) for n in args.size.lower().split("x"))
    os.environ["TZ"] = "UTC"
    time.tzset()

    from orin_console.core import create_core
    from orin_console.core.engine.types import GenerationParams
    from orin_console.core.settings import load_settings
    from orin_console.tui.app import build_app
    from orin_console.tui.messages import TelemetryUpdated
    from orin_console.tui.widgets.chat import ChatPane

    with tempfile.TemporaryDirectory(prefix="orin-screenshot-") as scratch_dir:
        scratch = Path(scratch_dir)
        catalog, model_id = _catalog(scratch)
        settings = load_settings(env={}, catalog_path=catalog, state_dir=scratch / "state",
                                 telemetry_source="psutil")
        core = create_core(settings, telemetry=False, optimiser=False)
        now = 1000.0
        try:
            core.start()
            core.sampler = _FixedTelemetry()  # type: ignore[assignment]  # the gauges get fixed samples
            app = build_app(core, settings=settings, clock=lambda: FIXED_WALL, mono_clock=lambda: now)

            async def scenario() -> None:
                async with app.run_test(size=(columns, rows)) as pilot:
                    while app.status is None:
                        await pilot.pause(0.05)
                    sample, history = _telemetry(now)
                    app.post_message(TelemetryUpdated(sample, history))
                    load = core.manager.load(model_id)  # in the log as an operator would see it
                    await asyncio.to_thread(load.result, 300)
                    chat = app.query_one(ChatPane)
                    chat.mode = "manual"
                    chat.preferred = model_id
                    chat._params = GenerationParams.build(max_tokens=40, temperature=0.0, seed=1)
                    app._title_chat()
                    await chat.ask(PROMPT)
                    deadline = time.monotonic() + 120
                    while chat.generating and time.monotonic() < deadline:
                        await pilot.pause(0.05)
                    await pilot.pause(0.5)  # the last status and the footer line
                    await pilot.wait_for_scheduled_animations()
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    app.save_screenshot(filename=args.out.name, path=str(args.out.parent))

            asyncio.run(scenario())
        finally:
            core.close()
    print(f"saved {args.out} ({args.out.stat().st_size} bytes, {columns}x{rows}, model {model_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
