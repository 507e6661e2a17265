"""The shared fixtures in conftest.py: the tiny pair and a workdir a test may break."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orin_console.core.catalog.store import parse_catalog
from orin_console.testing.managers import make_manager


def test_workdir_fixture_holds_the_tiny_pair_and_catalog(workdir: Path, tiny_pair: Path) -> None:
    catalog = parse_catalog((workdir / "models.toml").read_text(), workdir / "models.toml")
    assert [m.id for m in catalog] == ["alpha", "beta"]
    alpha = workdir / "alpha.gguf"
    assert alpha.read_bytes() == (tiny_pair / "alpha.gguf").read_bytes()
    alpha.write_bytes(b"")  # a test may break its copy; the session's original stays whole
    assert (tiny_pair / "alpha.gguf").stat().st_size > 0


def test_make_workdir_takes_another_catalog(make_workdir: Callable[..., Path]) -> None:
    folder = make_workdir('[[models]]\nid = "solo"\npath = "beta.gguf"\ntasks = ["chat"]\ncontext = 256\n')
    assert [m.id for m in parse_catalog((folder / "models.toml").read_text(), folder / "models.toml")] == ["solo"]


def test_a_manager_loads_and_generates_on_the_workdir(workdir: Path) -> None:
    from orin_console.core.runner import GenerateRequest

    with make_manager(workdir) as manager:
        manager.load("alpha").result(60)
        chunks = list(manager.generate("alpha", GenerateRequest(prompt="hi", max_tokens=5, temperature=0.0)))
    assert chunks[-1].done and chunks[-1].stats is not None and chunks[-1].stats.tokens == 5
