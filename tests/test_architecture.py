"""The core stays importable without the UI and web stacks (DESIGN.md, "The parts")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("textual", "fastapi", "uvicorn", "httpx", "starlette")


def test_core_imports_no_front_end_stack() -> None:
    code = (
        "import json, pkgutil, importlib, sys\n"
        "import orin_console.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'orin_console.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert not any(m.startswith(("orin_console.tui", "orin_console.api", "orin_console.cli")) for m in loaded)
    assert "orin_console.core.catalog.store" in loaded


def test_import_linter_contracts_hold(repo_root: Path) -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken" in proc.stdout
