"""Property tests: on any mutation of a valid file the reader answers quickly and safely.

Whatever bytes it is given, :func:`read_gguf` must either return a :class:`GGUFInfo`
that is consistent with the file, or raise :class:`GGUFError` - never another exception,
never a hang, never a large allocation.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orin_console.core.errors import GGUFError
from orin_console.core.gguf import GGUFInfo, read_gguf, sanitize
from orin_console.testing.tiny_models import write_tiny_llama

from gguf_craft import baseline

MAX_SECONDS = 1.0
MAX_PEAK_BYTES = 64 * 1024 * 1024

U64_EXTREMES = [
    0,
    1,
    63,
    64,
    65535,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
]
U32_EXTREMES = [0, 1, 2, 3, 4, 5, 9, 12, 13, 31, 99, 1 << 16, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Sample:
    """A valid file, the length of its header region and where its u64 fields are."""

    data: bytes
    header_len: int
    u64_at: tuple[int, ...]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gguf-prop-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def crafted() -> Sample:
    c = baseline()
    head, u64_at = c.header()
    return Sample(c.build(), len(head), tuple(u64_at))


@pytest.fixture(scope="module")
def tiny(workdir: Path) -> Sample:
    path = write_tiny_llama(
        workdir / "tiny.gguf", n_layers=1, n_embd=16, n_head=2, n_head_kv=1, n_ff=32
    )
    info = read_gguf(path)
    # Known u64 fields: the counts; the rest are hit by aligned random overwrites.
    return Sample(path.read_bytes(), info.data_offset, (8, 16))


@dataclass(frozen=True)
class Mutation:
    """One edit: ``kind`` at ``pos`` with ``arg`` (a bit, byte, value, length or bytes)."""

    kind: str
    pos: int
    arg: int | bytes = 0


def _mutation(sample: Sample) -> st.SearchStrategy[Mutation]:
    hl = sample.header_len
    m = Mutation
    return st.one_of(
        st.builds(m, st.just("flip"), st.integers(0, hl - 1), st.integers(0, 7)),
        st.builds(m, st.just("byte"), st.integers(0, hl - 1), st.integers(0, 255)),
        st.builds(m, st.just("truncate"), st.integers(0, len(sample.data) - 1)),
        st.builds(m, st.just("insert"), st.integers(0, hl), st.binary(min_size=1, max_size=16)),
        st.builds(m, st.just("delete"), st.integers(0, hl - 1), st.integers(1, 16)),
        st.builds(m, st.just("u64"), st.sampled_from(sample.u64_at), st.sampled_from(U64_EXTREMES)),
        st.builds(
            m,
            st.just("u64"),
            st.integers(0, hl // 8).map(lambda i: i * 8),
            st.sampled_from(U64_EXTREMES),
        ),
        st.builds(m, st.just("u32"), st.integers(0, hl - 4), st.sampled_from(U32_EXTREMES)),
    )


def _apply(data: bytes, mutations: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for mut in mutations:
        pos = min(mut.pos, len(buf))
        arg = mut.arg
        if mut.kind == "insert":
            assert isinstance(arg, bytes)
            buf[pos:pos] = arg
            continue
        assert isinstance(arg, int)
        if mut.kind == "flip" and pos < len(buf):
            buf[pos] ^= 1 << arg
        elif mut.kind == "byte" and pos < len(buf):
            buf[pos] = arg
        elif mut.kind == "truncate":
            del buf[pos:]
        elif mut.kind == "delete":
            del buf[pos : pos + arg]
        elif mut.kind in ("u64", "u32"):
            width = 8 if mut.kind == "u64" else 4
            buf[pos : pos + width] = arg.to_bytes(width, "little")
    return bytes(buf)


def _check_bounded(path: Path) -> GGUFInfo | GGUFError:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result: GGUFInfo | GGUFError = read_gguf(path)
    except GGUFError as exc:
        result = exc
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"read_gguf took {elapsed:.3f} s"
    assert peak < MAX_PEAK_BYTES, f"read_gguf allocated {peak} bytes at peak"
    if isinstance(result, GGUFInfo):
        _check_consistent(result)
    else:
        assert result.field and result.reason
    return result


def _check_consistent(info: GGUFInfo) -> None:
    """An accepted file must describe itself consistently."""
    assert info.version in (2, 3)
    assert len(info.tensors) == info.n_tensors
    assert info.data_offset % info.alignment == 0
    prev_end = 0
    for t in info.tensors:
        assert 0 < len(t.name.encode()) < 64
        assert 1 <= len(t.dims) <= 4 and all(d >= 1 for d in t.dims)
        assert t.offset >= prev_end and t.offset % info.alignment == 0
        assert info.data_offset + t.offset + t.n_bytes <= info.file_size
        prev_end = t.offset + t.n_bytes
    if info.block_count is not None:
        assert 1 <= info.block_count <= 512


def _run(sample: Sample, workdir: Path, mutations: list[Mutation]) -> None:
    path = workdir / "mutant.gguf"
    path.write_bytes(_apply(sample.data, mutations))
    result = _check_bounded(path)
    event("accepted" if isinstance(result, GGUFInfo) else f"refused: {result.field.split('[')[0]}")


@SETTINGS
@given(data=st.data())
def test_mutated_crafted_file(data: st.DataObject, crafted: Sample, workdir: Path) -> None:
    mutations = data.draw(st.lists(_mutation(crafted), min_size=1, max_size=4), label="mutations")
    _run(crafted, workdir, mutations)


@SETTINGS
@given(data=st.data())
def test_mutated_tiny_model(data: st.DataObject, tiny: Sample, workdir: Path) -> None:
    mutations = data.draw(st.lists(_mutation(tiny), min_size=1, max_size=4), label="mutations")
    _run(tiny, workdir, mutations)


def test_every_truncation_is_refused(crafted: Sample, workdir: Path) -> None:
    """Each prefix of the header region, and a few cuts into the data, must be refused."""
    path = workdir / "cut.gguf"
    cuts = list(range(crafted.header_len + 1)) + list(
        range(crafted.header_len + 1, len(crafted.data), 997)
    )
    for cut in cuts:
        path.write_bytes(crafted.data[:cut])
        with pytest.raises(GGUFError):
            read_gguf(path)


def test_unmutated_samples_are_accepted(crafted: Sample, tiny: Sample, workdir: Path) -> None:
    for sample in (crafted, tiny):
        path = workdir / "plain.gguf"
        path.write_bytes(sample.data)
        assert isinstance(_check_bounded(path), GGUFInfo)


_UNSAFE_EXTRA = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]}


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=64))
def test_sanitize_leaves_nothing_unsafe(text: str) -> None:
    for multiline in (False, True):
        out = sanitize(text, multiline=multiline)
        assert len(out) == len(text)
        allowed = "\n\t" if multiline else ""
        for ch, orig in zip(out, text, strict=True):
            assert ch in allowed or unicodedata.category(ch) != "Cc"
            assert ch not in _UNSAFE_EXTRA
            assert ch == orig or ch == "\ufffd"
