"""The lock report never pretends (DESIGN.md, "Tiers": "resident, not pinned" with the fix).

Here ``ulimit -l`` is 8 MB. A model well above it, asked for with ``use_mlock`` by a runner
that may not exceed the limit, must report ``pinned=False`` with the fix; the positive path
uses a model under the limit, or one above it where the runner holds CAP_IPC_LOCK.
"""

from __future__ import annotations

import re
import resource
import shutil
from pathlib import Path

import pytest

from orin_console.core.runner import Runner, RunnerConfig, tier_config
from orin_console.core.runner.tiers import has_ipc_lock
from orin_console.testing.tiny_models import write_tiny_llama

MB = 1024 * 1024
LIMIT = 8 * MB
_CAP_SYS_RESOURCE = 24


def _status() -> str:
    return Path("/proc/self/status").read_text()


def _has_cap(bit: int) -> bool:
    match = re.search(r"^CapEff:\s+([0-9a-f]+)", _status(), re.MULTILINE)
    return bool(match) and bool(int(match.group(1), 16) >> bit & 1)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~29 MB model: well above an 8 MB RLIMIT_MEMLOCK."""
    path = write_tiny_llama(
        tmp_path_factory.mktemp("big") / "big.gguf", n_embd=512, n_head=8, n_head_kv=4, n_ff=1024, n_layers=3
    )
    assert path.stat().st_size > 3 * LIMIT
    return path


def _limited_launcher() -> list[str]:
    """A launcher that gives the runner an 8 MB lock limit and no CAP_IPC_LOCK."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is needed to give the runner an 8 MB lock limit")
    launcher = ["prlimit", f"--memlock={LIMIT}:{LIMIT}"]
    if has_ipc_lock(_status()):
        if shutil.which("setpriv") is None:
            pytest.skip("this process holds CAP_IPC_LOCK and setpriv is missing to drop it")
        launcher += ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"]
    return launcher


def _load(name: str, cfg: RunnerConfig, launcher: list[str] | None = None):
    r = Runner(name, cfg, launcher=launcher or ())
    try:
        return r.start()
    finally:
        r.shutdown()


def test_model_over_the_lock_limit_is_resident_not_pinned_with_the_fix(big_model: Path) -> None:
    res = _load("big-unpinned", tier_config("ram", str(big_model), n_ctx=64, n_threads=1), _limited_launcher())
    assert res.mlock_requested and not res.pinned
    assert res.memlock_limit == LIMIT and res.locked_bytes <= LIMIT < res.model_bytes
    problem = res.pin_problem or ""
    assert problem.startswith("resident, not pinned")
    assert "RLIMIT_MEMLOCK is 8.0 MB" in problem
    assert "ulimit -l unlimited" in problem and "LimitMEMLOCK=infinity" in problem
    assert "CAP_IPC_LOCK" in problem


def test_model_under_the_lock_limit_is_pinned(tiny_model_path: Path) -> None:
    res = _load("tiny-pinned", tier_config("ram", str(tiny_model_path), n_ctx=64, n_threads=1), _limited_launcher())
    assert res.model_bytes < LIMIT
    assert res.pinned and res.pin_problem is None
    assert res.locked_bytes >= 0.95 * res.model_bytes


def test_big_model_is_pinned_when_the_runner_may_lock_it(big_model: Path) -> None:
    cfg = tier_config("ram", str(big_model), n_ctx=64, n_threads=1)
    if has_ipc_lock(_status()):
        res = _load("big-pinned", cfg)  # CAP_IPC_LOCK: RLIMIT_MEMLOCK does not apply
    elif _has_cap(_CAP_SYS_RESOURCE):
        res = _load("big-pinned", RunnerConfig(**{**cfg.to_wire(), "memlock_limit": -1}))
    else:
        pytest.skip("neither CAP_IPC_LOCK nor CAP_SYS_RESOURCE: a 29 MB lock cannot succeed here")
    assert res.pinned and res.pin_problem is None
    assert res.locked_bytes >= 0.95 * res.model_bytes


def test_raising_the_lock_limit_is_reported_when_refused(tiny_model_path: Path) -> None:
    cfg = RunnerConfig(**{**tier_config("ram", str(tiny_model_path), n_ctx=64).to_wire(), "memlock_limit": -1})
    res = _load("raise-limit", cfg)
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    if _has_cap(_CAP_SYS_RESOURCE) or hard == resource.RLIM_INFINITY:
        assert res.memlock_limit is None  # raised to unlimited
    else:
        assert res.memlock_limit == hard
        assert any("could not raise RLIMIT_MEMLOCK to unlimited" in n for n in res.notes)
    assert res.pinned  # the tiny model fits under the limit either way


def test_swap_tier_is_never_locked(big_model: Path) -> None:
    res = _load("big-swap", tier_config("swap", str(big_model), n_ctx=64, n_threads=1))
    assert not res.mlock_requested and not res.pinned and res.pin_problem is None
    assert res.locked_bytes < MB and res.gpu_layers == 0
