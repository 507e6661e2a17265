"""Tier moves through the manager: seconds per GB of model file, ram <-> swap, warm page cache.

A move restarts the runner with the other tier's settings (make-before-break). The model file
stays in the page cache, so the cost is a process start, llama.cpp's load from cached pages
and the first measurement. Prints one line per move and a final JSON line.

    .venv/bin/python benchmarks/tier_move.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orin_console.core import create_core  # noqa: E402
from orin_console.core.memory.prediction import GB  # noqa: E402
from orin_console.core.runner import GenerateRequest  # noqa: E402
from orin_console.core.settings import load_settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.5,
                        help="seconds between moves (an operator's pace; the spare runner is replaced meanwhile)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate-layers", type=int, default=0,
                        help="instead of --model, generate an f16 llama model with this many 2048-wide "
                             "layers (8 layers: about 0.8 GB) to see the per-GB cost without fixed costs")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    if args.generate_layers:
        from orin_console.testing.tiny_models import write_tiny_llama

        args.model = write_tiny_llama(Path(scratch.name) / "big.gguf", n_layers=args.generate_layers,
                                      n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632, n_ctx=2048, ftype="f16")
    if not args.model.is_file():
        print(f"{args.model} not found: run `make models` first", file=sys.stderr)
        return 2
    size_gb = args.model.stat().st_size / GB
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "models.toml").write_text(
            f'[[models]]\nid = "m"\npath = "{args.model.resolve()}"\ntasks = ["chat"]\ntier = "swap"\ncontext = 2048\n'
        )
        settings = load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state")
        runs = {}
        for label, spare in (("cold start", False), ("warm spare", True)):
            moves: dict[str, list[float]] = {"swap->ram": [], "ram->swap": []}
            with create_core(settings, telemetry=False, optimiser=False, n_threads=args.threads,
                             watch_interval_s=0, spare_runner=spare) as core:
                manager = core.manager
                time.sleep(args.gap)
                t0 = time.perf_counter()
                manager.load("m", "swap").result()
                first_load = time.perf_counter() - t0
                # Touch the weights so the page cache is warm, as on a box that has been serving.
                list(manager.generate("m", GenerateRequest(prompt="Hello", max_tokens=4, temperature=0)))
                for _ in range(args.rounds):
                    for target, key in (("ram", "swap->ram"), ("swap", "ram->swap")):
                        time.sleep(args.gap)
                        t0 = time.perf_counter()
                        manager.move("m", target).result()
                        seconds = time.perf_counter() - t0
                        moves[key].append(seconds / size_gb)
                        print(f"{label:10s} {key:10s} {seconds:6.3f} s  {seconds / size_gb:6.2f} s/GB")
            runs[label] = (first_load, moves)
    result: dict[str, object] = {"benchmark": "tier_move", "model": args.model.name, "model_gb": round(size_gb, 3)}
    for label, (first_load, moves) in runs.items():
        result[label.replace(" ", "_")] = {
            "first_load_s": round(first_load, 3),
            "median_s_per_gb": {k: round(statistics.median(v), 3) for k, v in moves.items()},
            "median_s": {k: round(statistics.median(v) * size_gb, 3) for k, v in moves.items()},
        }
    print(json.dumps(result))
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
