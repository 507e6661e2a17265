"""Shared fixtures: an isolated environment for every test, tiny models, the demo models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "models"


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
