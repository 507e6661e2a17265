"""The RAM tier's GPU offload, checked through the core on a machine with an NVIDIA GPU.

Run by `scripts/gpu_check.sh` (which builds llama-cpp-python with CUDA from the kit first).
Through `create_core` it loads the kit's model into `ram`, generates, moves it to `swap`,
generates, moves it back to `ram` and unloads it, then prints one JSON line:

- layers offloaded in each tier, from llama.cpp's log (`offloaded N/M layers to GPU`);
- GPU memory of each runner, predicted (the core's RAM-tier prediction) vs measured (NVML's
  per-process figure, through the core's `NvmlSource`);
- the measured CUDA runtime term: the runner's GPU memory minus the CUDA buffers llama.cpp
  reports (model, KV, compute), or minus the predicted weights + KV + compute where the log
  names none; it replaces the 300 MB assumption (`CUDA_RUNTIME_BYTES`);
- tok/s in ram and in swap, a tier move time each way;
- whether unloading gave the GPU memory back.

Exits 1 on a failed expectation (listed under "failures"), 2 when it cannot run at all.

    python scripts/gpu_check.py [--model gpu-kit/model.gguf] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024

OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
GPU_BUFFER_RE = re.compile(r"\b(CUDA\d+)\s+(\w+)\s+buffer size\s*=\s*([\d.]+) MiB")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The check's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "gpu-kit" / "model.gguf",
                        help="the GGUF to load (default: the kit's generated model)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per tok/s figure")
    parser.add_argument("--context", type=int, default=2048, help="the catalog's context for the model")
    parser.add_argument("--threads", type=int, default=4, help="decode threads of the runners")
    parser.add_argument("--return-tolerance-mb", type=float, default=64.0,
                        help="how far the GPU's used memory may stay above its level before the first load")
    parser.add_argument("--settle-s", type=float, default=1.0,
                        help="seconds to wait after an unload before reading NVML")
    args = parser.parse_args(argv)
    if args.tokens < 2:
        parser.error("--tokens must be at least 2 (tok/s needs two tokens)")
    return args


def offloaded_layers(lines: Iterable[str]) -> tuple[int, int] | None:
    """(offloaded, total) from the last ``offloaded N/M layers to GPU`` line; None if there is none."""
    found = None
    for line in lines:
        match = OFFLOADED_RE.search(line)
        if match:
            found = (int(match.group(1)), int(match.group(2)))
    return found


def gpu_buffer_bytes(lines: Iterable[str]) -> dict[str, int]:
    """The CUDA buffers llama.cpp reports (``CUDA0 model buffer size = 12.5 MiB``), by kind, in bytes.

    ``CUDA_Host`` buffers (pinned host memory) are not GPU memory and are left out.
    """
    sizes: dict[str, int] = {}
    for line in lines:
        for match in GPU_BUFFER_RE.finditer(line):
            kind = match.group(2).lower()
            sizes[kind] = sizes.get(kind, 0) + round(float(match.group(3)) * MB)
    return sizes


def gpu_figures(prediction: Mapping[str, int], measured: int | None, buffers: Mapping[str, int]) -> dict[str, Any]:
    """Predicted vs measured GPU memory of a fully offloaded runner, and the measured CUDA term.

    Args:
        prediction: the RAM-tier prediction's ``weights``, ``kv_cache``, ``compute`` and
            ``cuda_runtime`` in bytes.
        measured: NVML's figure for the runner's process (None: not attributed).
        buffers: :func:`gpu_buffer_bytes` of the runner's log.
    """
    on_gpu = prediction["weights"] + prediction["kv_cache"] + prediction["compute"]
    predicted = on_gpu + prediction["cuda_runtime"]
    out: dict[str, Any] = {"predicted_bytes": predicted, "measured_bytes": measured,
                           "log_buffers_bytes": dict(buffers), "prediction_error": None,
                           "cuda_runtime_bytes": None, "cuda_runtime_basis": None}
    if measured:
        out["prediction_error"] = round((predicted - measured) / measured, 3)
        if buffers:
            out["cuda_runtime_bytes"] = measured - sum(buffers.values())
            out["cuda_runtime_basis"] = "NVML minus the CUDA buffers in llama.cpp's log"
        else:
            out["cuda_runtime_bytes"] = measured - on_gpu
            out["cuda_runtime_basis"] = "NVML minus the predicted weights + KV + compute"
    return out


def evaluate(result: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The failed expectations and the warnings of a check's result.

    ``result`` has ``ram`` and ``swap`` (each with ``offloaded`` as [n, total] or None,
    ``gpu`` from :func:`gpu_figures` and ``tok_per_s``) and ``unload`` (``runner_pids_on_gpu``,
    ``used_before_bytes``, ``used_after_bytes``, ``tolerance_bytes``).
    """
    failures: list[str] = []
    warnings: list[str] = []
    ram, swap, unload = result["ram"], result["swap"], result["unload"]
    off = ram.get("offloaded")
    if off is None:
        failures.append("ram: llama.cpp's log has no 'offloaded N/M layers to GPU' line")
    elif off[0] == 0:
        failures.append(f"ram: no layer offloaded ({off[0]}/{off[1]})")
    elif off[0] < off[1]:
        failures.append(f"ram: only {off[0]}/{off[1]} layers offloaded")
    if not ram.get("gpu", {}).get("measured_bytes"):
        failures.append("ram: NVML shows no GPU memory for the runner's process")
    swap_off = swap.get("offloaded")
    if swap_off is not None and swap_off[0] > 0:
        failures.append(f"swap: {swap_off[0]}/{swap_off[1]} layers offloaded (the swap tier is CPU only)")
    if swap.get("gpu", {}).get("measured_bytes"):
        warnings.append(f"swap: the runner holds {swap['gpu']['measured_bytes'] / MB:.0f} MiB of GPU memory "
                        "without offloaded layers (CUDA context / op offload); the swap prediction counts none")
    for tier, part in (("ram", ram), ("swap", swap)):
        if not part.get("tok_per_s"):
            failures.append(f"{tier}: no tok/s figure (the generation produced fewer than two tokens)")
    if unload["runner_pids_on_gpu"]:
        failures.append(f"unload: runner processes still hold GPU memory: {unload['runner_pids_on_gpu']}")
    before, after = unload.get("used_before_bytes"), unload.get("used_after_bytes")
    if before is not None and after is not None and after - before > unload["tolerance_bytes"]:
        failures.append(f"unload: the GPU's used memory stayed {(after - before) / MB:.0f} MiB above its level "
                        "before the first load")
    error = ram.get("gpu", {}).get("prediction_error")
    if error is not None and abs(error) > 0.25:
        warnings.append(f"ram: GPU memory prediction off by {error:+.0%} (with the 300 MB CUDA assumption)")
    return failures, warnings


def render(result: Mapping[str, Any]) -> str:
    """The result as one JSON line."""
    return json.dumps(result, sort_keys=True, separators=(",", ":"))


class _Capture(logging.Handler):
    """Keeps every runner output line (llama.cpp's log included) since the last :meth:`take`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def run_check(args: argparse.Namespace, nvml_module: Any = None) -> dict[str, Any]:  # pragma: no cover
    """Load, generate, move and unload through the core; return the raw result.

    ``nvml_module`` replaces ``pynvml`` (a CPU smoke run passes the tests' fake).
    """
    sys.path.insert(0, str(ROOT))
    from orin_console.core import create_core
    from orin_console.core.gpu import installed_build_offloads_to_gpu
    from orin_console.core.runner import GenerateRequest
    from orin_console.core.settings import load_settings
    from orin_console.core.telemetry.nvml_source import NvmlSource

    capture = _Capture()
    runner_log = logging.getLogger("orin_console.runner")
    runner_log.setLevel(logging.DEBUG)
    runner_log.addHandler(capture)
    nvml = NvmlSource(nvml=nvml_module)
    nvml.open()
    result: dict[str, Any] = {"check": "gpu", "model": str(args.model),
                              "model_bytes": args.model.stat().st_size,
                              "build_offloads": installed_build_offloads_to_gpu()}
    try:
        first = nvml.read()
        result["gpu_name"] = first.gpu_name
        used_before = first.gpu_mem_used
        pids: set[int] = set()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "models.toml").write_text(
                f'[[models]]\nid = "m"\npath = "{args.model.resolve()}"\ntasks = ["chat"]\n'
                f'tier = "ram"\ncontext = {args.context}\n')
            settings = load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state")
            with create_core(settings, telemetry=False, optimiser=False, n_threads=args.threads,
                             watch_interval_s=0, spare_runner=False) as core:
                manager = core.manager

                def measure(tier: str) -> dict[str, Any]:
                    status = manager.model_status("m")
                    request = GenerateRequest(prompt="Hello", max_tokens=args.tokens, temperature=0)
                    stats = None
                    for chunk in manager.generate("m", request):
                        if chunk.done:
                            stats = chunk.stats
                    time.sleep(0.5)  # NVML's process list follows allocations with a short delay
                    lines = capture.take()
                    pid = status.pid
                    if pid is not None:
                        pids.add(pid)
                    gpu_by_pid = nvml.read().gpu_process_bytes or {}
                    pred = manager.prediction("m", "ram")
                    parts = {"weights": pred.weights, "kv_cache": pred.kv_cache, "compute": pred.compute,
                             "cuda_runtime": int(pred.details.get("cuda_runtime", 0))}
                    load = manager.load_result("m")
                    return {
                        "pid": pid,
                        "offloaded": offloaded_layers(lines),
                        "gpu_layers_requested": None if load is None else load.gpu_layers,
                        "load_notes": [] if load is None else list(load.notes),
                        "gpu": gpu_figures(parts, gpu_by_pid.get(pid or -1), gpu_buffer_bytes(lines)),
                        "tier_prediction_bytes": manager.prediction("m", tier).total,
                        "tok_per_s": None if stats is None or stats.tok_per_s is None else round(stats.tok_per_s, 1),
                        "tokens": None if stats is None else stats.tokens,
                    }

                capture.take()
                t0 = time.perf_counter()
                manager.load("m", "ram").result()
                result["first_load_s"] = round(time.perf_counter() - t0, 3)
                result["ram"] = measure("ram")
                moves: dict[str, float] = {}
                t0 = time.perf_counter()
                manager.move("m", "swap").result()
                moves["ram->swap"] = round(time.perf_counter() - t0, 3)
                result["swap"] = measure("swap")
                t0 = time.perf_counter()
                manager.move("m", "ram").result()
                moves["swap->ram"] = round(time.perf_counter() - t0, 3)
                result["ram_again"] = measure("ram")
                result["move_s"] = moves
                manager.unload("m").result()
            time.sleep(args.settle_s)
            last = nvml.read()
            left = sorted(pid for pid in pids if (last.gpu_process_bytes or {}).get(pid))
            result["unload"] = {"runner_pids_on_gpu": left, "used_before_bytes": used_before,
                                "used_after_bytes": last.gpu_mem_used,
                                "tolerance_bytes": round(args.return_tolerance_mb * MB)}
    finally:
        nvml.close()
        runner_log.removeHandler(capture)
    cuda = result["ram"]["gpu"]["cuda_runtime_bytes"]
    result["cuda_runtime_mb"] = None if cuda is None else round(cuda / MB, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - needs a GPU
    args = parse_args(argv)
    if not args.model.is_file():
        print(f"{args.model} not found: run `make gpu-kit` on a machine with network first", file=sys.stderr)
        return 2
    try:
        result = run_check(args)
    except Exception as exc:  # noqa: BLE001 - the one JSON line must come out whatever failed
        print(render({"check": "gpu", "ok": False, "failures": [f"the check could not run: {exc!r}"],
                      "warnings": []}))
        return 2
    failures, warnings = evaluate(result)
    result.update(ok=not failures, failures=failures, warnings=warnings)
    print(render(result))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
