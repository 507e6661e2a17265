"""The full-disk part of :mod:`stress.durability`, and small helpers it shares.

A real ENOSPC is preferred, in this order: a 64 KiB tmpfs mounted here (root), a tmpfs in a
private user+mount namespace (``unshare --user --map-root-user --mount``, for an unprivileged
user; the scenario then runs in a child inside that namespace), and only then an injected
``OSError(ENOSPC)`` at ``os.fsync`` (the figures say ``"method": "injected-OSError(ENOSPC)"``).
The scenario itself (:func:`scenario`) is the same for the three.

    python -m stress.durability_support --scenario DIR MODELS METHOD   # inside a namespace
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

from orin_console.testing.tiny_models import write_tiny_llama

__all__ = ["enospc_check", "env_for_cli", "scenario", "write_model"]

INJECTED = "injected-OSError(ENOSPC)"

_INJECT_CLI = r"""
import errno, os, sys
def fsync(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
os.fsync = fsync
from orin_console.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
"""The CLI with ``os.fsync`` failing as on a full disk (the fallback when nothing can be mounted)."""


def write_model(path: Path, seed: int) -> Path:
    """A tiny GGUF (a few hundred KB) at ``path``, distinct per ``seed``."""
    if not path.is_file():
        write_tiny_llama(path, n_layers=1, n_embd=32, n_ff=64, n_ctx=256, seed=seed, name=path.stem)
    return path


def env_for_cli(folder: Path) -> dict[str, str]:
    """The environment of a CLI child: no developer ``ORIN_*`` settings, an empty config file,
    state in ``folder/state-cli``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORIN_")}
    config = folder / "config-cli.toml"
    if not config.exists():
        config.write_text("")
    env.update({"ORIN_CONFIG": str(config), "ORIN_STATE_DIR": str(folder / "state-cli")})
    return env


def _cli(catalog: Path, model: Path, work: Path, injected: bool) -> subprocess.CompletedProcess[str]:
    args = ["--catalog", str(catalog), "models", "add", str(model)]
    prefix = ["-c", _INJECT_CLI] if injected else ["-m", "orin_console"]
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, timeout=120,
                          env=env_for_cli(work), check=False)


def _fill(folder: Path) -> int:
    """Fill the file system holding ``folder`` until the kernel says ENOSPC; bytes written."""
    written = 0
    with open(folder / "fill", "wb", buffering=0) as fh:
        try:
            while True:
                written += fh.write(b"\0" * 4096) or 0
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return written


@contextmanager
def _injecting(active: bool) -> Iterator[None]:
    if not active:
        yield
        return

    def fsync(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with mock.patch("os.fsync", fsync):
        yield


def _names_the_problem(message: str) -> bool:
    low = message.lower()
    return ("no space left" in low or "enospc" in low) and "free some space" in low and "unchanged" in low


def scenario(small: Path, models: Path, method: str) -> dict[str, Any]:
    """The catalog on ``small`` (a full file system, or injected ENOSPC): every face refuses
    cleanly, nothing changes, and the add succeeds once there is space."""
    from fastapi.testclient import TestClient

    from orin_console.api.app import create_app
    from orin_console.core.errors import OrinError
    from orin_console.core.settings import load_settings
    from orin_console.testing.managers import make_core

    injected = method == INJECTED
    work = Path(tempfile.mkdtemp(prefix="enospc-work-"))
    catalog = small / "models.toml"
    m1, m2, m3 = (write_model(models / f"full-{i}.gguf", seed=40 + i) for i in (1, 2, 3))
    figures: dict[str, Any] = {"method": method}
    first = _cli(catalog, m1, work, injected=False)
    figures["setup_exit"] = first.returncode
    figures["filled_bytes"] = 0 if injected else _fill(small)
    before = catalog.read_bytes()

    cli = _cli(catalog, m2, work, injected)
    message = cli.stderr.strip()
    figures["cli"] = {"exit": cli.returncode, "message": message[-400:],
                      "ok": cli.returncode == 2 and _names_the_problem(message) and "Traceback" not in cli.stderr
                      and "internal error" not in message}

    settings = load_settings(env={}, catalog_path=catalog, state_dir=work / "state", model_folders=[models])
    core = make_core(work, settings=settings)
    try:
        with _injecting(injected):
            try:
                core.manager.add_models(m3)
                tui: dict[str, Any] = {"raised": None, "ok": False}
            except OrinError as exc:
                tui = {"raised": type(exc).__name__, "message": str(exc)[-400:],
                       "ok": _names_the_problem(str(exc)) and len(core.manager.catalog) == 1}
            with redirect_stderr(StringIO()), TestClient(create_app(core), base_url="http://127.0.0.1") as client:
                reply = client.post("/models/add", json={"path": str(m3)})
        body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
        api_message = str(body.get("error", {}).get("message", reply.text))
        figures["tui_add_path"] = tui
        figures["api"] = {"status": reply.status_code, "message": api_message[-400:],
                          "ok": 400 <= reply.status_code < 600 and reply.status_code != 500
                          and _names_the_problem(api_message)}
    finally:
        core.close()
    after = catalog.read_bytes()
    temps = [p.name for p in small.glob(".models.toml.*.tmp")]
    figures["catalog_unchanged"] = after == before
    figures["temp_files_left"] = len(temps)

    (small / "fill").unlink(missing_ok=True)
    retry = _cli(catalog, m2, work, injected=False)
    from orin_console.core.catalog.store import CatalogStore

    ids = [e.id for e in CatalogStore(catalog).load()]
    figures["after_freeing"] = {"exit": retry.returncode, "entries": ids}
    figures["nothing_lost"] = retry.returncode == 0 and len(ids) == 2
    figures["ok"] = bool(first.returncode == 0 and figures["cli"]["ok"] and figures["tui_add_path"]["ok"]
                         and figures["api"]["ok"] and figures["catalog_unchanged"] and not temps
                         and figures["nothing_lost"])
    shutil.rmtree(work, ignore_errors=True)
    return figures


def _mount_tmpfs(where: Path) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "orin-enospc", str(where)],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0


def enospc_check(folder: Path, *, method: str = "auto") -> dict[str, Any]:
    """Run :func:`scenario` with the most real ENOSPC this machine allows (``method``: ``auto``,
    ``tmpfs``, ``userns`` or ``injected``)."""
    small, models = folder / "small", folder / "models"
    small.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    if method in ("auto", "tmpfs"):
        if shutil.which("mount") and _mount_tmpfs(small):
            try:
                return {**scenario(small, models, "tmpfs 64 KiB"), "tried": tried}
            finally:
                subprocess.run(["umount", "-l", str(small)], capture_output=True, check=False)
        tried.append("tmpfs: mount refused" if shutil.which("mount") else "tmpfs: no mount command")
    if method in ("auto", "userns") and not shutil.which("unshare"):
        tried.append("userns: no unshare command")
    elif method in ("auto", "userns"):
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m",
                               "stress.durability_support", "--scenario", str(small), str(models)],
                              capture_output=True, text=True, timeout=300, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            return {**json.loads(lines[-1]), "tried": tried}
        tried.append(f"userns: exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:200]}")
    return {**scenario(small, models, INJECTED), "tried": tried}


def _namespace_main(argv: list[str]) -> int:
    small, models = Path(argv[0]), Path(argv[1])
    if not _mount_tmpfs(small):
        print("cannot mount a tmpfs in this namespace", file=sys.stderr)
        return 3
    print(json.dumps(scenario(small, models, "tmpfs 64 KiB in a user namespace")), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["--scenario"] or len(sys.argv) != 4:
        sys.exit("usage: python -m stress.durability_support --scenario SMALL_DIR MODELS_DIR")
    sys.exit(_namespace_main(sys.argv[2:]))
