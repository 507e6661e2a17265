"""Catalog edits from several processes and threads at once lose nothing (issue 8, item 7).

Each edit takes the flock on ``.models.toml.lock`` and re-reads the file under it; these
tests start the editors together (a barrier, not a sleep) so their edits overlap.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

from orin_console.core.catalog.add import add_models
from orin_console.core.catalog.store import CatalogEntry, CatalogStore, parse_catalog

N_PROCESSES = 16

# Imports everything first, says "ready", and runs `models add` only when told "go", so
# the sixteen edits start within a few milliseconds of each other.
_ADDER = """
import sys
from orin_console.cli.main import main
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


def _entries(catalog: Path) -> list[CatalogEntry]:
    return list(parse_catalog(catalog.read_text(), catalog))


def test_sixteen_parallel_models_add_keep_all_sixteen(tmp_path: Path, tiny_model_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    files = [folder / f"model-{i:02d}.gguf" for i in range(N_PROCESSES)]
    for file in files:
        shutil.copy(tiny_model_path, file)
    catalog = tmp_path / "models.toml"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ADDER, "--catalog", str(catalog), "models", "add", str(file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for file in files
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    entries = _entries(catalog)
    assert sorted(e.id for e in entries) == [f"model-{i:02d}" for i in range(N_PROCESSES)]
    assert sorted(e.path for e in entries) == [f"models/model-{i:02d}.gguf" for i in range(N_PROCESSES)]


def test_threads_with_their_own_stores_keep_every_edit(tmp_path: Path) -> None:
    catalog = tmp_path / "models.toml"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def adder(i: int) -> None:
        store = CatalogStore(catalog)  # each thread its own store: only the file lock is shared
        barrier.wait()
        try:
            for j in range(5):
                store.add([CatalogEntry(id=f"m{i}-{j}", path=f"m{i}-{j}.gguf", tasks=("chat",))])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=adder, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_entries(catalog)) == 40


def test_an_edit_from_a_stale_store_keeps_what_another_store_wrote(tmp_path: Path) -> None:
    catalog = tmp_path / "models.toml"
    first = CatalogStore(catalog)
    first.add([CatalogEntry(id="a", path="a.gguf", tasks=("chat",))])
    other = CatalogStore(catalog)
    other.add([CatalogEntry(id="b", path="b.gguf", tasks=("code",))])
    assert [e.id for e in first.current] == ["a"]  # first has not reloaded yet

    first.update("a", pin=True)
    first.remove("b")  # it is known under the lock even though first never saw it
    other.add([CatalogEntry(id="c", path="c.gguf", tasks=("chat",))])
    assert [(e.id, e.pin) for e in _entries(catalog)] == [("a", True), ("c", False)]


def test_add_models_judges_ids_and_duplicates_against_the_file_under_the_lock(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        shutil.copy(tiny_model_path, tmp_path / name / "model.gguf")
    catalog = tmp_path / "models.toml"
    stale, other = CatalogStore(catalog), CatalogStore(catalog)
    assert len(stale.current) == 0
    add_models(other, tmp_path / "one" / "model.gguf")

    again = add_models(stale, tmp_path / "one" / "model.gguf")
    assert again.added == () and "already in the catalog as 'model'" in again.refused[0].reason
    second = add_models(stale, tmp_path / "two" / "model.gguf")
    assert [e.id for e in second.added] == ["model-2"]  # made unique against the file, not the stale copy
    assert [e.id for e in _entries(catalog)] == ["model", "model-2"]


def test_a_symlinked_catalog_is_edited_through_the_link(tmp_path: Path) -> None:
    (tmp_path / "dotfiles").mkdir()
    target = tmp_path / "dotfiles" / "models.toml"
    target.write_text("# mine\n")
    target.chmod(0o640)
    link = tmp_path / "models.toml"
    link.symlink_to(target)
    store = CatalogStore(link)
    store.add([CatalogEntry(id="a", path="a.gguf", tasks=("chat",))])
    store.update("a", tier="ram")
    assert link.is_symlink()
    text = target.read_text()
    assert text.startswith("# mine\n") and [e.tier for e in parse_catalog(text, target)] == ["ram"]
    assert target.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "dotfiles" / ".models.toml.lock").exists()
