"""Catalog durability (issue 11, part 4): kill -9 during saves, a full disk, concurrent editors.

Three checks, each on real files and real processes:

- **kill -9 during saves**: a child process saves the catalog over and over (each save ``k``
  sets one entry's ``context`` to ``64 + k``, its priority, and adds or drops its ``sha256`` so
  the file's length changes); the parent SIGKILLs it at a random moment inside a save, restarts
  it, and so on until ``saves`` saves are done. After every kill, and continuously while the child
  runs, the file must parse (the strict catalog parser) and hold exactly the catalog of the last
  acknowledged save or of the one after it. Leftover temp files are counted.
- **ENOSPC**: the catalog lives on a file system that is full: a 64 KiB tmpfs (we are root), else
  a tmpfs inside a user+mount namespace (``unshare -rm``), else, and said so in the figures, an
  ``OSError(ENOSPC)`` injected at the write's ``fsync``. ``orin-console models add`` must exit 2
  with one line naming the problem and the fix, the console's own add path (the TUI's dialog
  calls ``manager.add_models``) must raise an :class:`OrinError` with that message, the API must
  answer with an error (not a 500), and the catalog must be byte-for-byte unchanged with no temp
  file left; once space is freed the same add succeeds and every entry is there.
- **concurrent editors**: the TUI's path (``manager.add_models`` in threads of this process), the
  API (``POST /models/add`` to a live ``orin-console serve``) and the CLI (``orin-console models
  add`` processes) add different files to one catalog at the same moment: every added entry must
  be in the file afterwards, and the server must see them all.

    python -m stress.durability [--quick] [--seed N] [--set saves=1000]
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stress.common import ModelSpec, module_main, serve_process
from stress.durability_support import enospc_check, env_for_cli, write_model

__all__ = ["run"]

_SAVER = r"""
import sys
from orin_console.core.catalog.store import CatalogStore
store = CatalogStore(sys.argv[1])
k = int(sys.argv[2])
while True:
    k += 1
    store.update("counter", context=64 + k, priority=k % 101, sha256=("ab" * 32 if k % 2 else None))
    print(k, flush=True)
"""
"""The saver child: save ``k`` gives entry ``counter`` the fields of :func:`_expected_counter`."""

_FIXED_ENTRIES = 20

def _expected_counter(k: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"context": 64 + k, "priority": k % 101}
    if k % 2:
        fields["sha256"] = "ab" * 32
    return fields

def _saver_catalog(folder: Path) -> Path:
    """A catalog of 20 commented entries plus ``counter`` (at save 0): a few KB, so a torn write
    would show."""
    lines = ["# durability check: every save rewrites this whole file", ""]
    for i in range(_FIXED_ENTRIES):
        lines += [f"# model {i}: a comment that must survive every save", "[[models]]", f'id = "m{i}"',
                  f'path = "m{i}.gguf"', 'tasks = ["chat", "code"]', 'tier = "swap"', f"context = {256 + i}", ""]
    lines += ["[[models]]", 'id = "counter"', 'path = "counter.gguf"', 'tasks = ["chat"]', "context = 64",
              "priority = 0", ""]
    path = folder / "models.toml"
    path.write_text("\n".join(lines))
    return path

def _judge(path: Path, allowed: set[int]) -> tuple[int | None, str | None]:
    """The save ``k`` the file holds, or why it is not one of ``allowed`` (or does not parse)."""
    from orin_console.core.catalog.store import parse_catalog
    from orin_console.core.errors import OrinError
    from orin_console.core.files import CONFIG_FILE_LIMIT, read_text_file

    try:
        text = read_text_file(path, limit_bytes=CONFIG_FILE_LIMIT, what="catalog")
        catalog = parse_catalog(text, path)
    except (OrinError, FileNotFoundError) as exc:
        return None, f"does not parse: {exc}"
    if "a comment that must survive every save" not in text or len(catalog) != _FIXED_ENTRIES + 1:
        return None, f"lost content: {len(catalog)} entries"
    for i, entry in enumerate(catalog.entries[:_FIXED_ENTRIES]):
        if (entry.id, entry.context, entry.tasks) != (f"m{i}", 256 + i, ("chat", "code")):
            return None, f"entry {i} changed: {entry!r}"
    counter = catalog.get("counter")
    k = counter.context - 64
    got: dict[str, Any] = {"context": counter.context, "priority": counter.priority}
    if counter.sha256 is not None:
        got["sha256"] = counter.sha256
    if got != _expected_counter(k):
        return k, f"save {k} holds a mix of two saves: {got}"
    if k not in allowed:
        return k, f"holds save {k}, expected one of {sorted(allowed)}"
    return k, None

def kill_during_saves(folder: Path, saves: int, rng: random.Random) -> dict[str, Any]:
    """SIGKILL a saving process at random moments until ``saves`` saves are done."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _saver_catalog(folder)
    k = 0
    kills = checks = torn = 0
    problems: list[str] = []
    save_times: list[float] = []
    while k < saves:
        child = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(k)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env_for_cli(folder))
        acked = [k]
        stamps: list[float] = []

        def read(proc: subprocess.Popen[str] = child, acked: list[int] = acked, stamps: list[float] = stamps) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                acked.append(int(line))
                stamps.append(time.monotonic())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        goal = min(saves, k + rng.randint(1, 10))
        deadline = time.monotonic() + 60
        while acked[-1] < goal and child.poll() is None and time.monotonic() < deadline:
            # a reader meanwhile: the file parses and holds a save at every moment
            got, problem = _judge(path, set(range(acked[-1] - 1, acked[-1] + 3)))
            checks += 1
            if problem:
                torn += 1
                problems.append(f"while saving: {problem}")
            time.sleep(0.002)
        if len(stamps) > 1:
            save_times.extend(b - a for a, b in itertools.pairwise(stamps))
        mean = sum(save_times) / len(save_times) if save_times else 0.005
        time.sleep(rng.uniform(0, mean))  # land inside the next save, at a random point of it
        if child.poll() is None:
            child.kill()
            kills += 1
        child.wait(10)
        reader.join(10)
        if child.returncode not in (-9,) and acked[-1] < goal:
            err = (child.stderr.read() if child.stderr else "").strip().splitlines()
            problems.append(f"the saver exited {child.returncode}: {err[-1] if err else ''}")
            break
        got, problem = _judge(path, {acked[-1], acked[-1] + 1})
        checks += 1
        if problem:
            torn += 1
            problems.append(f"after kill {kills}: {problem}")
        k = got if got is not None else acked[-1]
    temps = sorted(p.name for p in folder.glob(".models.toml.*.tmp"))
    return {"saves": k, "kills": kills, "checks": checks, "bad_reads": torn,
            "temp_files_left": len(temps), "save_ms_mean": round(1000 * sum(save_times) / max(1, len(save_times)), 2),
            "problems": problems[:5], "ok": torn == 0 and k >= saves and len(temps) <= 1 and not problems}

def concurrent_editors(folder: Path, per_face: int, rng: random.Random) -> dict[str, Any]:
    """Add ``per_face`` files each from the TUI's path, the API and the CLI at the same moment."""
    import httpx

    from orin_console.core.errors import OrinError
    from orin_console.core.settings import load_settings
    from orin_console.testing.managers import make_core

    folder.mkdir(parents=True, exist_ok=True)
    base = [ModelSpec("alpha"), ModelSpec("beta", seed=7, tier="swap")]
    faces = ("tui", "api", "cli")
    files = {face: [folder / f"{face}-{i}.gguf" for i in range(per_face)] for face in faces}
    for n, path in enumerate(p for face in faces for p in files[face]):
        write_model(path, seed=100 + n)
    outcomes: dict[str, list[str]] = {face: [] for face in faces}
    with serve_process(folder, base) as served:
        settings = load_settings(env={}, catalog_path=folder / "models.toml", state_dir=folder / "state-tui")
        core = make_core(folder, settings=settings)
        barrier = threading.Barrier(3 * per_face)

        def tui(path: Path) -> None:
            barrier.wait(30)
            try:
                result = core.manager.add_models(path)
                outcomes["tui"].append("ok" if result.added else f"refused: {result.refused}")
            except OrinError as exc:
                outcomes["tui"].append(f"error: {exc}")

        def api(path: Path) -> None:
            barrier.wait(30)
            reply = httpx.post(served.url + "/models/add", json={"path": str(path)}, timeout=60)
            outcomes["api"].append("ok" if reply.status_code == 201 else f"{reply.status_code}: {reply.text[:200]}")

        def cli(path: Path) -> None:
            barrier.wait(30)
            done = subprocess.run([sys.executable, "-m", "orin_console", "--catalog", str(folder / "models.toml"),
                                   "models", "add", str(path)], capture_output=True, text=True, timeout=120,
                                  env=env_for_cli(folder), check=False)
            outcomes["cli"].append("ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-200:]}")

        work: list[tuple[Callable[[Path], None], Path]] = [(fn, p) for face, fn in zip(faces, (tui, api, cli),
                                                                                      strict=True)
                                                           for p in files[face]]
        rng.shuffle(work)
        threads = [threading.Thread(target=fn, args=(p,), daemon=True) for fn, p in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        from orin_console.core.catalog.store import CatalogStore

        catalog = CatalogStore(folder / "models.toml").load()
        present = {os.path.realpath(catalog.model_path(e)) for e in catalog}
        expected = {os.path.realpath(p) for face in faces for p in files[face]}
        expected |= {os.path.realpath(folder / f"{s.id}.gguf") for s in base}
        missing = sorted(os.path.basename(p) for p in expected - present)
        # the server watches the file: it must come to list every entry
        ids = {e.id for e in catalog}
        seen: set[str] = set()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = {m["id"] for m in httpx.get(served.url + "/models/list", timeout=10).json()["models"]}
            if ids <= seen:
                break
            time.sleep(0.2)
        core.close()
    failed = {face: bad[:3] for face, outs in outcomes.items() if (bad := [o for o in outs if o != "ok"])}
    return {"editors": 3 * per_face, "entries_expected": len(expected), "entries_present": len(expected & present),
            "missing": missing[:10], "failed": failed, "server_missing": sorted(ids - seen)[:10],
            "ok": not missing and not failed and ids <= seen}

def run(quick: bool, seed: int, *, folder: Path | None = None, saves: int | None = None,
        per_face: int | None = None, enospc_method: str = "auto", **_: Any) -> dict[str, Any]:
    """Run the three checks; figures per check and ``goal_met`` when all three hold."""
    rng = random.Random(seed)
    own = folder is None
    root = Path(folder) if folder is not None else Path(os.environ.get("TMPDIR", "/tmp")) / f"durability-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        kills = kill_during_saves(root / "kill", saves or (50 if quick else 1000), rng)
        full = enospc_check(root / "enospc", method=enospc_method)
        edits = concurrent_editors(root / "edits", per_face or (3 if quick else 10), rng)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return {"kill_during_saves": kills, "enospc": full, "concurrent_edits": edits,
            "wall_s": round(time.monotonic() - started, 1),
            "goal_met": bool(kills["ok"] and full["ok"] and edits["ok"])}

if __name__ == "__main__":
    sys.exit(module_main(run, name="stress.durability"))
