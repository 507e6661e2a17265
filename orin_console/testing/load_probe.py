"""Load a model in a child process, as a runner would, and report what the OS says it holds.

Used by the memory tests and ``benchmarks/load_and_prediction.py`` to compare predictions
with reality. The child imports llama_cpp, loads the model with the runner's settings,
evaluates a prompt that fills the context (so the attention scratch memory of the worst
case is touched), generates a few tokens, and prints one JSON line read from
``/proc/self/status``. This is the state :func:`orin_console.core.memory.prediction.predict` predicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

__all__ = ["ProbeResult", "measure_runner_baseline", "probe_load"]

_STATUS_FIELDS = ("VmRSS", "VmSwap", "VmHWM", "RssAnon", "RssFile")

_CHILD = r"""
import json, sys, time
def status():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in FIELDS:
                out[key] = int(value.split()[0]) * 1024
    return out
FIELDS = set(json.loads(sys.argv[2]))
cfg = json.loads(sys.argv[1])
t0 = time.perf_counter()
import llama_cpp
imported = status()
t1 = time.perf_counter()
llm = llama_cpp.Llama(
    cfg["path"], n_ctx=cfg["n_ctx"], n_gpu_layers=cfg["n_gpu_layers"], use_mmap=cfg["use_mmap"],
    use_mlock=cfg["use_mlock"], n_batch=cfg["n_batch"], n_threads=cfg["n_threads"], verbose=False,
)
t2 = time.perf_counter()
loaded = status()
n_ctx = llm.n_ctx()
want = max(1, n_ctx - cfg["gen_tokens"] - 1) if cfg["fill"] else 8
text = "The quick brown fox jumps over the lazy dog while the cat sleeps. " * (n_ctx // 4 + 8)
prompt = llm.tokenize(text.encode())[:want]
made = 0
for _tok in llm.generate(prompt, temp=0.0, reset=True):
    made += 1
    if made >= cfg["gen_tokens"]:
        break
t3 = time.perf_counter()
print(json.dumps({"imported": imported, "loaded": loaded, "final": status(),
                  "import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2,
                  "n_ctx": n_ctx, "prompt_tokens": len(prompt), "generated": made}))
"""


@dataclass(frozen=True)
class ProbeResult:
    """What a probed runner held, in bytes, and how long it took, in seconds.

    Attributes:
        n_ctx: the context llama.cpp allocated.
        rss: resident set size at the end (after the full-context prompt and generation).
        swap: swapped-out bytes at the end.
        hwm: peak RSS (``VmHWM``).
        rss_anon: anonymous part of ``rss``.
        rss_file: file-backed part of ``rss`` (the mapped weights).
        rss_loaded: RSS right after the load, before any prompt.
        rss_imported: RSS with llama_cpp imported and no model.
        import_s: time to import llama_cpp.
        load_s: time of the ``Llama(...)`` constructor (the model load).
        generate_s: time of the prompt and generation.
        wall_s: the whole child process, spawn to exit.
        prompt_tokens: tokens evaluated before generating.
        generated: tokens generated.
    """

    n_ctx: int
    rss: int
    swap: int
    hwm: int
    rss_anon: int
    rss_file: int
    rss_loaded: int
    rss_imported: int
    import_s: float
    load_s: float
    generate_s: float
    wall_s: float
    prompt_tokens: int
    generated: int

    @property
    def measured(self) -> int:
        """What the runner occupies: RSS + swap."""
        return self.rss + self.swap


def probe_load(
    path: str | os.PathLike[str],
    n_ctx: int,
    *,
    n_gpu_layers: int = 0,
    use_mmap: bool = True,
    use_mlock: bool = False,
    n_batch: int = 512,
    n_threads: int | None = None,
    fill: bool = True,
    gen_tokens: int = 4,
    timeout: float = 300.0,
) -> ProbeResult:
    """Load ``path`` in a fresh Python process with the runner's settings and measure it.

    The defaults are the swap tier's settings (CPU only, mapped, unlocked).

    Args:
        path: the GGUF file.
        n_ctx: requested context.
        n_gpu_layers: layers to offload.
        use_mmap: map the file.
        use_mlock: lock the weights.
        n_batch: prompt batch size.
        n_threads: decode threads (None: llama-cpp-python's default).
        fill: evaluate a prompt that fills the context before generating.
        gen_tokens: tokens to generate.
        timeout: seconds before the child is killed.

    Returns:
        The measurements.

    Raises:
        RuntimeError: the child failed; the message carries the end of its stderr.
    """
    cfg = {
        "path": os.fspath(path), "n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers,
        "use_mmap": use_mmap, "use_mlock": use_mlock, "n_batch": n_batch,
        "n_threads": n_threads, "fill": fill, "gen_tokens": gen_tokens,
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cfg), json.dumps(_STATUS_FIELDS)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"probe of {path} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(lines[-1])
    final = data["final"]
    return ProbeResult(
        n_ctx=data["n_ctx"], rss=final["VmRSS"], swap=final.get("VmSwap", 0),
        hwm=final.get("VmHWM", final["VmRSS"]), rss_anon=final.get("RssAnon", 0),
        rss_file=final.get("RssFile", 0), rss_loaded=data["loaded"]["VmRSS"],
        rss_imported=data["imported"]["VmRSS"], import_s=data["import_s"],
        load_s=data["load_s"], generate_s=data["generate_s"], wall_s=wall,
        prompt_tokens=data["prompt_tokens"], generated=data["generated"],
    )


def measure_runner_baseline(timeout: float = 60.0) -> int:
    """RSS in bytes of a Python process that has imported llama_cpp (an idle runner)."""
    code = (
        "import llama_cpp\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'):\n"
        "        print(int(line.split()[1]) * 1024)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"baseline probe failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return int(proc.stdout.strip().splitlines()[-1])
