"""Benchmark: model load time, and predicted vs measured memory of a runner.

For each model (the demo models under ``models/`` when fetched, plus generated tiny models)
and each context, a fresh child process loads the model as a swap-tier runner does (CPU
only, mapped, unlocked), fills the context with a prompt, generates a few tokens and reports
its RSS + swap from ``/proc``. Printed per run: load time, the prediction and its components,
the measured figure and the error. A second error column shows the prediction corrected by
the measurement of the *previous* context of the same model (what the console does after
its first load of a model).

The page cache is warm (each file is read before its first load), as it is on a console
that has loaded the model before; a cold first load also pays the disk read.

Usage::

    .venv/bin/python benchmarks/load_and_prediction.py [--contexts 512,2048] [--threads 2]

The last line of output is JSON: ``{"benchmark": "load_and_prediction", "models": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orin_console.core.gguf import read_gguf  # noqa: E402
from orin_console.core.memory.measurements import Corrections, model_identity  # noqa: E402
from orin_console.core.memory.prediction import MB, predict  # noqa: E402
from orin_console.testing.load_probe import measure_runner_baseline, probe_load  # noqa: E402
from orin_console.testing.tiny_models import write_tiny_llama  # noqa: E402

DEMO = (
    ("smollm2-135m-q4_1", REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3-270m-q4_k_m", REPO / "models" / "gemma-3-270m-q4_k_m.gguf"),
)


def _models(tmp: Path) -> list[tuple[str, Path]]:
    models = [(name, path) for name, path in DEMO if path.is_file()]
    models.append(("tiny-llama-f32", write_tiny_llama(tmp / "tiny.gguf", n_ctx=4096)))
    models.append((
        "tiny-llama-f16-wide",
        write_tiny_llama(tmp / "wide.gguf", n_layers=4, n_embd=512, n_head=8, n_head_kv=2,
                         n_ff=1536, n_ctx=4096, ftype="f16"),
    ))
    return models


def _warm(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def _mib(n: int) -> float:
    return round(n / MB, 1)


def run(contexts: list[int], threads: int | None) -> dict[str, Any]:
    """Measure every model at every context; return the JSON-ready report."""
    baseline = measure_runner_baseline()
    print(f"idle runner (python + llama_cpp): {_mib(baseline)} MiB RSS")
    header = (f"{'model':<22}{'ctx':>6}{'load s':>8}{'predicted':>11}{'measured':>10}"
              f"{'error':>8}{'corrected':>10}  components (MiB)")
    print(header)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        store = Corrections(tmp / "measurements.json")
        for name, path in _models(tmp):
            _warm(path)
            info = read_gguf(path)
            identity = model_identity(path)
            for n_ctx in contexts:
                plain = predict(info, n_ctx, "swap", n_gpu_layers=0)
                corrected = predict(info, n_ctx, "swap", n_gpu_layers=0, corrections=store,
                                    identity=identity)
                probe = probe_load(path, n_ctx, n_threads=threads, gen_tokens=4)
                error = (plain.total - probe.measured) / probe.measured
                corr_error = (corrected.total - probe.measured) / probe.measured
                store.record(identity, plain, rss=probe.rss, swap=probe.swap, state="peak")
                row = {
                    "model": name,
                    "file_bytes": path.stat().st_size,
                    "n_ctx": probe.n_ctx,
                    "load_s": round(probe.load_s, 3),
                    "import_s": round(probe.import_s, 3),
                    "prompt_tokens": probe.prompt_tokens,
                    "prompt_and_generate_s": round(probe.generate_s, 2),
                    "predicted_bytes": plain.total,
                    "measured_bytes": probe.measured,
                    "error_pct": round(100 * error, 1),
                    "corrected_basis": corrected.basis,
                    "corrected_error_pct": round(100 * corr_error, 1),
                    "components_bytes": plain.components(),
                    "predicted_at_load_bytes": plain.at_load,
                    "measured_at_load_bytes": probe.rss_loaded,
                }
                rows.append(row)
                comps = " ".join(f"{k} {_mib(v)}" for k, v in plain.components().items())
                corr = f"{100 * corr_error:+.1f}%" if corrected.basis != "model" else "-"
                print(f"{name:<22}{probe.n_ctx:>6}{probe.load_s:>8.3f}{_mib(plain.total):>11}"
                      f"{_mib(probe.measured):>10}{100 * error:>+7.1f}%{corr:>10}  {comps}")
    worst = max(abs(r["error_pct"]) for r in rows)
    print(f"worst prediction error: {worst:.1f}% (goal: <= 10%)")
    return {"benchmark": "load_and_prediction", "runner_baseline_bytes": baseline,
            "max_abs_error_pct": worst, "models": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", default="512,2048",
                        help="comma-separated contexts to load each model with")
    parser.add_argument("--threads", type=int, default=2, help="decode threads of the runner")
    args = parser.parse_args(argv)
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    report = run(contexts, args.threads)
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
