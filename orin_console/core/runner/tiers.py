"""Per-tier runner settings (DESIGN.md, "Tiers") and the honest check of weight locking.

| tier   | runner settings                                                        |
|--------|------------------------------------------------------------------------|
| `ram`  | every layer on the GPU when the build supports offload; `use_mlock`;   |
|        | `use_mmap`; `oom_score_adj` 500                                        |
| `swap` | CPU only (`n_gpu_layers=0`); `use_mmap`; no lock; `oom_score_adj` 800  |
| `disk` | not loaded: no runner                                                  |

Whether the build supports GPU offload is decided inside the runner, where llama.cpp is
loaded anyway: the console never loads llama.cpp itself (on a Jetson that would initialise
CUDA in the console). A `ram` config therefore asks for all layers (``n_gpu_layers=-1``)
unless the caller already knows the answer (``gpu_offload=``); a CPU-only build loads with
``n_gpu_layers=0`` and says so in :attr:`LoadResult.notes` (:data:`CPU_ONLY_NOTE`).

Everything here is plain Python: no llama.cpp, no process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from orin_console.core.tier import Tier
from orin_console.core.units import MB, format_size

OOM_SCORE_ADJ: dict[str, int] = {Tier.RAM: 500, Tier.SWAP: 800}
"""Runner ``oom_score_adj`` per tier; the console stays at its own (normally 0), lower."""

CPU_ONLY_NOTE = "CPU only: this llama.cpp build has no GPU offload"
PIN_FULL_FRACTION = 0.95
"""Locked bytes below this fraction of a CPU-resident model mean "not pinned"."""

_CAP_IPC_LOCK = 14


@dataclass(frozen=True)
class RunnerConfig:
    """How one runner loads its model.

    Attributes:
        model_path: the GGUF file.
        n_ctx: context size.
        n_gpu_layers: layers on the GPU: 0 none, -1 all (when the build supports offload).
        use_mlock: lock the weights in memory.
        use_mmap: map the file instead of reading it.
        oom_score_adj: the runner's ``oom_score_adj`` (raised above the console's if lower).
        n_threads: decode threads; None lets llama-cpp-python choose.
        n_batch: prompt batch size.
        seed: default sampling seed; None for llama.cpp's default.
        tier: the tier this config was made for (reporting only).
        memlock_limit: when set, the runner tries to raise its ``RLIMIT_MEMLOCK`` to this many
            bytes (-1: unlimited) before loading; only a process with CAP_SYS_RESOURCE may go
            above the hard limit. A refusal is reported, not fatal.
    """

    model_path: str
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    use_mlock: bool = False
    use_mmap: bool = True
    oom_score_adj: int = OOM_SCORE_ADJ[Tier.RAM]
    n_threads: int | None = None
    n_batch: int = 512
    seed: int | None = None
    tier: str = Tier.RAM.value
    memlock_limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", str(self.model_path))
        if self.n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {self.n_ctx}")
        if self.n_gpu_layers < -1:
            raise ValueError(f"n_gpu_layers must be >= -1, got {self.n_gpu_layers}")
        if not -1000 <= self.oom_score_adj <= 1000:
            raise ValueError(f"oom_score_adj must be in [-1000, 1000], got {self.oom_score_adj}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")
        if self.n_batch < 1:
            raise ValueError(f"n_batch must be >= 1, got {self.n_batch}")

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON form sent to the runner."""
        return asdict(self)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> RunnerConfig:
        """Rebuild a config from :meth:`to_wire`'s output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in wire.items() if k in names})


def tier_config(
    tier: str,
    model_path: str,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    n_batch: int = 512,
    seed: int | None = None,
    gpu_offload: bool | None = None,
) -> RunnerConfig:
    """Return the runner settings DESIGN.md's tier table prescribes.

    Args:
        tier: ``"ram"`` or ``"swap"`` (``"disk"`` has no runner).
        model_path: the GGUF file.
        n_ctx: context size.
        n_threads: decode threads; None lets llama-cpp-python choose.
        n_batch: prompt batch size.
        seed: default sampling seed.
        gpu_offload: whether the llama.cpp build offloads to a GPU, when known; None lets
            the runner decide (it falls back to the CPU and says so).

    Returns:
        The config.

    Raises:
        ValueError: an unknown tier, or ``"disk"``.
    """
    if tier == Tier.DISK:
        raise ValueError("the disk tier has no runner: a model in it is not loaded")
    if tier == Tier.RAM:
        return RunnerConfig(
            model_path=model_path,
            n_ctx=n_ctx,
            n_gpu_layers=0 if gpu_offload is False else -1,
            use_mlock=True,
            use_mmap=True,
            oom_score_adj=OOM_SCORE_ADJ[Tier.RAM],
            n_threads=n_threads,
            n_batch=n_batch,
            seed=seed,
            tier=Tier.RAM.value,
        )
    if tier == Tier.SWAP:
        return RunnerConfig(
            model_path=model_path,
            n_ctx=n_ctx,
            n_gpu_layers=0,
            use_mlock=False,
            use_mmap=True,
            oom_score_adj=OOM_SCORE_ADJ[Tier.SWAP],
            n_threads=n_threads,
            n_batch=n_batch,
            seed=seed,
            tier=Tier.SWAP.value,
        )
    raise ValueError(f"unknown tier {tier!r}; use one of ram, swap, disk")


def child_oom_score_adj(requested: int, console: int | None) -> int:
    """Return the ``oom_score_adj`` a runner gets: the tier's, but always above the console's.

    Args:
        requested: the config's value.
        console: the console's own value (None when unreadable).

    Returns:
        A value in [-1000, 1000].
    """
    value = requested if console is None else max(requested, console + 1)
    return max(-1000, min(1000, value))


def format_limit(n: int | None) -> str:
    """Return a ``RLIMIT_MEMLOCK`` value as text: ``"unlimited"``, ``"64.0 KB"``, ``"8.0 MB"``.

    Sizes go through :func:`~orin_console.core.units.format_size`; a limit under 1 MB (the
    common 64 KB default) is shown in KB so that it does not read as ``"0.1 MB"``.
    """
    if n is None:
        return "unlimited"
    return format_size(n, unit="KB" if n < MB else None)


def memlock_fix(memlock_limit: int | None) -> str:
    """Return the operator's fix for a failed lock, naming the current limit."""
    return (
        f"RLIMIT_MEMLOCK is {format_limit(memlock_limit)}: run `ulimit -l unlimited` or set "
        "LimitMEMLOCK=infinity in the systemd unit, or grant CAP_IPC_LOCK"
    )


def locked_bytes_from_status(status_text: str) -> int:
    """Return ``VmLck`` in bytes from the text of ``/proc/<pid>/status`` (0 when absent)."""
    match = re.search(r"^VmLck:\s+(\d+)\s*kB", status_text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def has_ipc_lock(status_text: str) -> bool:
    """Return whether ``CapEff`` in ``/proc/<pid>/status`` text includes CAP_IPC_LOCK."""
    match = re.search(r"^CapEff:\s+([0-9a-fA-F]+)", status_text, re.MULTILINE)
    return match is not None and bool(int(match.group(1), 16) >> _CAP_IPC_LOCK & 1)


def assess_pin(
    *,
    requested: bool,
    locked_bytes: int,
    model_bytes: int,
    gpu_layers: int,
    mlock_failed: bool,
    memlock_limit: int | None,
) -> tuple[bool, str | None]:
    """Decide whether a model's weights are really locked, and if not, why and the fix.

    A CPU-resident model (``gpu_layers == 0``) is pinned when at least
    :data:`PIN_FULL_FRACTION` of its tensor bytes are locked. With GPU offload only the
    CPU-side remainder is mapped and locked (GPU memory on a Jetson is not pageable anyway),
    so there the test is that llama.cpp reported no failed ``mlock``.

    Args:
        requested: whether the config asked for ``use_mlock``.
        locked_bytes: ``VmLck`` after the load.
        model_bytes: the model's tensor bytes.
        gpu_layers: layers put on the GPU (0 for none).
        mlock_failed: llama.cpp logged "failed to mlock".
        memlock_limit: the ``RLIMIT_MEMLOCK`` soft limit in bytes, None when unlimited.

    Returns:
        ``(pinned, problem)``; ``problem`` is None when pinned or when no lock was asked for.
    """
    if not requested:
        return False, None
    # On the GPU the weights are not in host memory: the lock has nothing to cover there.
    ok = not mlock_failed and (gpu_layers != 0 or locked_bytes >= PIN_FULL_FRACTION * model_bytes)
    if ok:
        return True, None
    return False, (
        f"resident, not pinned: only {format_size(locked_bytes)} of "
        f"{format_size(model_bytes)} locked. {memlock_fix(memlock_limit)}"
    )
