"""Benchmark: what the file facts cost ``GET /models/list``.

Each ModelInfo carries its file's GGUF header facts (size, quantisation...). The headers are
read once per file identity (real path, size, mtime); after that a list costs a ``stat`` per
model. This measures, in process (FastAPI's TestClient, no network), over a catalog of the
given GGUF files (default: the demo models) repeated ``--copies`` times under other ids (each
copy a symbolic link, a second name the catalog allows; it resolves to the same file, so the
cold list reads each real file's header once):

- the first list (every header read: the cold cost, paid once per file);
- the warm list, p50 and p99 over ``--iterations`` calls, and the header reads during them
  (expected: 0);
- the facts lookup alone for the whole catalog (a ``stat`` and a dict lookup per model), to
  show what it adds to a warm list.

Usage::

    .venv/bin/python benchmarks/list_facts.py [--copies 10] [--iterations 300] [FILE.gguf ...]

The last line of output is JSON: ``{"benchmark": "list_facts", "models", "cold_ms",
"cold_header_reads", "warm_p50_ms", "warm_p99_ms", "warm_header_reads", "facts_lookup_p50_us"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.api.facts import catalog_facts, facts_cache
from orin_console.core.settings import load_settings
from orin_console.testing.managers import make_core

DEMO = [Path("models/SmolLM2-135M-Instruct.Q4_1.gguf"), Path("models/gemma-3-270m-q4_k_m.gguf")]


def _catalog(folder: Path, files: list[Path], copies: int) -> str:
    entries = []
    for i in range(copies):
        for n, file in enumerate(files):
            link = folder / f"m{i}-{n}.gguf"
            link.symlink_to(file.resolve())
            entries.append(f'[[models]]\nid = "m{i}-{n}"\npath = "{link.name}"\ntasks = ["chat"]\ncontext = 512\n')
    return "\n".join(entries)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEMO)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (run `make models`, or name GGUF files)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "models.toml").write_text(_catalog(folder, args.files, args.copies))
        settings = load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state")
        with make_core(folder, settings=settings) as core:
            client = TestClient(create_app(core), base_url="http://127.0.0.1:8000")
            start = time.perf_counter()
            first = client.get("/models/list")
            cold = time.perf_counter() - start
            assert first.status_code == 200, first.text
            models = first.json()["models"]
            cache = facts_cache(core)
            reads = cache.reads
            warm = []
            for _ in range(args.iterations):
                start = time.perf_counter()
                client.get("/models/list").raise_for_status()
                warm.append(time.perf_counter() - start)
            lookups = []
            for _ in range(args.iterations):
                start = time.perf_counter()
                catalog_facts(core)
                lookups.append(time.perf_counter() - start)
            warm.sort()
            figures = {
                "benchmark": "list_facts", "models": len(models), "files": len(args.files),
                "quantizations": sorted({m["facts"]["quantization"] for m in models if m["facts"]["quantization"]}),
                "cold_ms": _ms(cold), "warm_p50_ms": _ms(statistics.median(warm)),
                "warm_p99_ms": _ms(warm[int(len(warm) * 0.99) - 1]), "cold_header_reads": reads,
                "warm_header_reads": cache.reads - reads,
                "facts_lookup_p50_us": round(statistics.median(lookups) * 1e6, 1),
                "load_average": round(os.getloadavg()[0], 2),
            }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
