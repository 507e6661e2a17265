"""Shared fixtures: an isolated environment for every test, tiny models, the demo models."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests are part of the suite, so they must be deterministic: the same examples on
# every run and machine (a test that wants more sets its own max_examples on top of this).
settings.register_profile("orin", derandomize=True, database=None, deadline=None)
settings.load_profile("orin")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "models"

TINY_CATALOG = """\
# test catalog
[[models]]
id = "alpha"
path = "alpha.gguf"
tasks = ["chat"]
tier = "ram"
context = 2048

[[models]]
id = "beta"
path = "beta.gguf"
tasks = ["code"]
tier = "swap"
context = 2048
"""
"""The catalog :func:`workdir` writes: ``alpha`` (chat, ram) and ``beta`` (code, swap)."""


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's own config file or ORIN_* variables."""
    for key in list(os.environ):
        if key.startswith("ORIN_"):
            monkeypatch.delenv(key)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ORIN_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("ORIN_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama-architecture GGUF (generated once per session) that llama.cpp loads fast."""
    from orin_console.testing.tiny_models import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def demo_model(file_name: str) -> Path:
    """A demo model under models/, or a skip that says how to fetch it."""
    path = DEMO_DIR / file_name
    if not path.is_file():
        pytest.skip(f"demo model {file_name} not fetched: run `make models`")
    return path


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``alpha.gguf`` and ``beta.gguf`` (seed 7), generated once per session.

    Both have a 2048-token context and ``ascii_output=True``, so a greedy generation streams
    printable text piece by piece up to ``max_tokens``. Read-only: :func:`workdir` copies them.
    """
    from orin_console.testing.tiny_models import write_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-pair")
    write_tiny_llama(folder / "alpha.gguf", n_ctx=2048, ascii_output=True)
    write_tiny_llama(folder / "beta.gguf", seed=7, n_ctx=2048, ascii_output=True)
    return folder


@pytest.fixture
def make_workdir(tmp_path: Path, tiny_pair: Path) -> Callable[..., Path]:
    """Builds the test's own catalog folder: copies of the tiny pair and a ``models.toml``.

    Call it as ``make_workdir()`` for :data:`TINY_CATALOG`, or ``make_workdir(text)`` for
    another catalog over ``alpha.gguf``/``beta.gguf``. The models are copied, not linked, so a
    test may delete or truncate them without touching the session's originals.
    """

    def make(catalog: str = TINY_CATALOG) -> Path:
        for name in ("alpha.gguf", "beta.gguf"):
            shutil.copyfile(tiny_pair / name, tmp_path / name)
        (tmp_path / "models.toml").write_text(catalog)
        return tmp_path

    return make


@pytest.fixture
def workdir(make_workdir: Callable[..., Path]) -> Path:
    """A catalog folder with :data:`TINY_CATALOG` over copies of the tiny pair (see
    :func:`make_workdir`). Managers are built on it with
    ``orin_console.testing.managers.make_manager(workdir)``."""
    return make_workdir()
