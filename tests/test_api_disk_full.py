"""A full disk on a catalog edit through the API is 507 Insufficient Storage (``DiskFull``, a
``FileSaveError``), the message naming the problem, the catalog's folder and the fix, the
catalog unchanged; on the OpenAI-compatible face too. The full disk is emulated as
tests/test_stress_durability.py does: ``os.fsync`` (or the lock file's ``os.open``) failing with
ENOSPC."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from orin_console.api.app import create_app
from orin_console.api.errors import status_for
from orin_console.api.openai_errors import from_core
from orin_console.core import Core
from orin_console.core.catalog.store import CatalogStore
from orin_console.core.files import DiskFull, FileSaveError
from orin_console.testing.managers import make_core, settings_for


@pytest.fixture
def core(workdir: Path) -> Iterator[Core]:
    (workdir / "incoming").mkdir()
    with make_core(workdir, settings=settings_for(workdir, model_folders=[workdir / "incoming"])) as built:
        yield built


@pytest.fixture
def api(core: Core) -> TestClient:
    return TestClient(create_app(core), base_url="http://127.0.0.1:8000")


def _enospc(_fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _names_the_problem_and_the_fix(body: dict[str, Any], folder: Path) -> None:
    error = body["error"]
    assert error["type"] == "DiskFull"
    message = error["message"]
    assert "No space left on device (ENOSPC)" in message and "free some space there" in message
    assert str(folder) in message and "catalog on disk is unchanged" in message


def test_a_pin_on_a_full_disk_is_507_naming_the_folder_and_the_catalog_is_unchanged(
    api: TestClient, workdir: Path
) -> None:
    before = (workdir / "models.toml").read_bytes()
    with mock.patch("os.fsync", _enospc):
        answer = api.post("/models/alpha/pin", json={"pinned": True})
    assert answer.status_code == 507, answer.text
    _names_the_problem_and_the_fix(answer.json(), workdir)
    assert (workdir / "models.toml").read_bytes() == before
    assert api.post("/models/alpha/pin", json={"pinned": True}).json()["pin"] is True  # space again: it works


def test_an_add_on_a_full_disk_is_507(api: TestClient, workdir: Path) -> None:
    target = workdir / "incoming" / "gamma.gguf"
    target.write_bytes((workdir / "alpha.gguf").read_bytes())
    with mock.patch("os.fsync", _enospc):
        answer = api.post("/models/add", json={"path": str(target)})
    assert answer.status_code == 507, answer.text
    _names_the_problem_and_the_fix(answer.json(), workdir)
    assert [e.id for e in CatalogStore(workdir / "models.toml").load()] == ["alpha", "beta"]


def test_no_inode_left_for_the_lock_file_is_507_too(api: TestClient, workdir: Path) -> None:
    real_open = os.open

    def no_inode(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if str(path).endswith(".lock"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode, **kw)

    with mock.patch("os.open", no_inode):
        answer = api.post("/models/alpha/pin", json={"pinned": True})
    assert answer.status_code == 507, answer.text
    error = answer.json()["error"]
    assert error["type"] == "DiskFull" and "lock file" in error["message"] and "free some space" in error["message"]


def test_disk_full_maps_to_507_on_both_faces_and_other_save_failures_keep_theirs() -> None:
    full = DiskFull("models.toml: cannot save the catalog: No space left on device (ENOSPC); …", errno.ENOSPC)
    assert isinstance(full, FileSaveError) and isinstance(full, OSError)
    assert status_for(full) == 507
    openai = from_core(full)
    assert (openai.status, openai.type, openai.code) == (507, "server_error", "disk_full")
    assert status_for(DiskFull("quota", errno.EDQUOT)) == 507
    assert status_for(FileSaveError("read-only file system", errno.EROFS)) == 400


def test_the_sdk_raises_disk_full_error_and_the_attached_console_the_cores_disk_full(
    core: Core, workdir: Path
) -> None:
    import asyncio

    import httpx

    from orin_console.client import DiskFullError, OrinClient, ServerError
    from orin_console.tui.backend.remote_chat import core_error

    async def pin() -> BaseException:
        transport = httpx.ASGITransport(app=create_app(core))
        async with OrinClient("http://127.0.0.1:8000", transport=transport) as client:
            with mock.patch("os.fsync", _enospc), pytest.raises(DiskFullError) as caught:
                await client.models.pin("alpha", True)
        return caught.value

    error = asyncio.run(pin())
    assert isinstance(error, ServerError) and error.status == 507 and error.type == "DiskFull"
    assert "free some space there" in error.message and str(workdir) in error.message
    shown = core_error(error)
    assert isinstance(shown, DiskFull) and "No space left on device" in str(shown)
