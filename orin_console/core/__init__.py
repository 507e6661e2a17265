"""The manager core: catalog, settings, GGUF validation, memory (prediction, admission,
scheduling), runners, the engine, placement and telemetry.

Front ends build it with :func:`create_core`. This package must never import textual,
fastapi, uvicorn or httpx (checked by import-linter and by ``tests/test_architecture.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Core", "create_core"]

if TYPE_CHECKING:
    from orin_console.core.service import Core, create_core


def __getattr__(name: str) -> Any:
    # Lazy, so importing a leaf module (the runner child, the GGUF reader) stays light.
    if name in __all__:
        from orin_console.core import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
