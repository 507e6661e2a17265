from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orin_console.core.catalog.store import CatalogEntry, CatalogStore, parse_catalog
from orin_console.core.errors import CatalogError


def test_bundled_catalog_is_valid(repo_root: Path) -> None:
    catalog = CatalogStore(repo_root / "models.toml").load()
    assert [e.id for e in catalog] == ["smollm2", "gemma3"]
    smol = catalog.get("smollm2")
    assert "chat" in smol.tasks and smol.tier == "ram" and smol.sha256
    assert catalog.model_path(smol) == repo_root / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\ntier="gpu"\n', "model 'a' (entry 1): field 'tier'"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["dance"]\n', "field 'tasks.0' = 'dance'"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=[]\n', "field 'tasks'"),
        ('[[models]]\nid="a b"\npath="a.gguf"\ntasks=["chat"]\n', "field 'id' = 'a b': must start"),
        ('[[models]]\nid="a"\ntasks=["chat"]\n', "field 'path' is required"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\ncontext=10\n', "field 'context' = 10"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\npriority=101\n', "field 'priority'"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\nsha256="XYZ"\n', "field 'sha256' must be 64"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\ncolour=1\n', "field 'colour' is not known"),
        ('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat","chat"]\n', "lists a task twice"),
        ('[[models]]\nid="a"\npath="a"\ntasks=["chat"]\n[[models]]\nid="a"\npath="b"\ntasks=["code"]\n',
         "(entry 2): id 'a' is already used by entry 1"),
        ('models = 3\n', "'models' must be an array of tables"),
        ('[other]\nx=1\n', "unknown top-level key(s) other"),
        ('[[models]\n', "not valid TOML"),
    ],
)
def test_invalid_catalogs_name_entry_and_field(body: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(body, tmp_path / "models.toml")
    assert expected in str(info.value)


def test_bad_edit_keeps_last_good_catalog(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\n')
    store = CatalogStore(path)
    assert [e.id for e in store.load()] == ["a"]
    path.write_text('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\ntier="nope"\n')
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with pytest.raises(CatalogError, match="last good catalog stays in force"):
        store.reload_if_changed()
    assert [e.id for e in store.current] == ["a"]
    assert store.reload_if_changed() is None  # the same bad file is reported once
    with pytest.raises(CatalogError):  # and edits on top of a broken file are refused
        store.add([CatalogEntry(id="b", path="b.gguf", tasks=("chat",))])


def test_edits_keep_comments_and_order(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(textwrap.dedent("""\
        # my catalog
        [[models]]
        id = "a"  # the first one
        path = "a.gguf"
        tasks = ["chat"]

        [[models]]
        id = "b"
        path = "b.gguf"
        tasks = ["code"]
        """))
    store = CatalogStore(path)
    store.add([CatalogEntry(id="c", path="c.gguf", tasks=("completion",), tier="ram")])
    store.update("a", pin=True, tier="swap")
    store.remove("b")
    text = path.read_text()
    assert text.startswith("# my catalog\n")
    assert 'id = "a"  # the first one' in text
    assert [e.id for e in parse_catalog(text, path)] == ["a", "c"]
    assert store.current.get("a").pin is True
    with pytest.raises(CatalogError, match="already in"):
        store.add([CatalogEntry(id="a", path="x.gguf", tasks=("chat",))])
    with pytest.raises(CatalogError, match="no model 'zz'"):
        store.remove("zz")
    with pytest.raises(CatalogError, match="field 'priority'"):
        store.update("a", priority=1000)
    assert parse_catalog(path.read_text(), path).get("a").priority == 50


def test_new_catalog_file_is_created_with_a_teaching_header(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "sub" / "models.toml")
    assert len(store.current) == 0
    store.add([CatalogEntry(id="a", path="a.gguf", tasks=("chat",))])
    text = (tmp_path / "sub" / "models.toml").read_text()
    assert text.startswith("# Orin Console model catalog")
    assert [e.id for e in parse_catalog(text, tmp_path)] == ["a"]


def test_failed_write_leaves_the_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\n')
    before = path.read_text()

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        CatalogStore(path).add([CatalogEntry(id="b", path="b.gguf", tasks=("chat",))])
    assert path.read_text() == before
    # No temp file is left; the edit lock file stays (removing it would race a locker).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".models.toml.lock", "models.toml"]


_SAVER = """
import sys
from orin_console.core.catalog.store import CatalogStore
store = CatalogStore(sys.argv[1])
n = 0
print("ready", flush=True)
while True:
    n += 1
    store.update("a", priority=n % 100, tasks=("chat",) * 1 if n % 2 else ("chat", "code"))
"""


def test_kill_during_saves_never_leaves_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text("# keep me\n" + '[[models]]\nid="a"\npath="a.gguf"\ntasks=["chat"]\n' + "# padding\n" * 2000)
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31, 0.37):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = path.read_text()
        assert text.startswith("# keep me\n")
        assert parse_catalog(text, path).get("a").tasks[0] == "chat"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("models.toml", ".models.toml.lock")]
    # A kill between mkstemp and rename can leave a temp file; it is never the catalog itself.
    assert all(name.startswith(".models.toml.") and name.endswith(".tmp") for name in leftovers)
