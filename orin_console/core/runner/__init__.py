"""Model runners: one child process per loaded model (DESIGN.md, "Model runners").

The console never loads weights. Each loaded model lives in a runner process hosting one
``llama_cpp.Llama``; the console talks to it over a socketpair with a small framed protocol.

Example:
    >>> cfg = tier_config("ram", "models/SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=2048)  # doctest: +SKIP
    >>> runner = Runner("smollm2", cfg, on_exit=lambda r, died: print(died))  # doctest: +SKIP
    >>> result = runner.start(progress=lambda frac: None)  # doctest: +SKIP
    >>> for chunk in runner.generate(GenerateRequest(prompt="Hi", max_tokens=16)):  # doctest: +SKIP
    ...     print(chunk.text, end="")
    >>> runner.shutdown()  # doctest: +SKIP
"""

from orin_console.core.runner.client import Runner
from orin_console.core.runner.exits import describe_exit, pick_tail
from orin_console.core.runner.generation import Generation
from orin_console.core.runner.messages import (
    FINISH_REASONS,
    MAX_PROMPT_BYTES,
    Chunk,
    GenerateRequest,
    GenerationStats,
    LoadResult,
    RunnerBusy,
    RunnerDied,
    RunnerError,
    RunnerHealth,
    RunnerInputError,
    RunnerLoadError,
    RunnerLoadStopped,
    check_request_text,
)
from orin_console.core.runner.spares import SpareRunners
from orin_console.core.runner.tiers import CPU_ONLY_NOTE, OOM_SCORE_ADJ, RunnerConfig, memlock_fix, tier_config

__all__ = [
    "CPU_ONLY_NOTE",
    "FINISH_REASONS",
    "MAX_PROMPT_BYTES",
    "OOM_SCORE_ADJ",
    "Chunk",
    "GenerateRequest",
    "Generation",
    "GenerationStats",
    "LoadResult",
    "Runner",
    "RunnerBusy",
    "RunnerConfig",
    "RunnerDied",
    "RunnerError",
    "RunnerHealth",
    "RunnerInputError",
    "RunnerLoadError",
    "RunnerLoadStopped",
    "SpareRunners",
    "check_request_text",
    "describe_exit",
    "memlock_fix",
    "pick_tail",
    "tier_config",
]
