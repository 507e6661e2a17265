"""The tiny-model generator: valid for our reader, loadable and runnable by real llama.cpp."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from orin_console.core.gguf import read_gguf
from orin_console.testing.tiny_models import (
    DEFAULT_CHAT_TEMPLATE,
    TINY_VOCAB_SIZE,
    FType,
    tiny_model_bytes_estimate,
    tiny_vocab,
    write_tiny_llama,
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("ftype", "quant", "file_type"), [("f32", "F32", 0), ("f16", "F16", 1)])
def test_reader_accepts_tiny_model(
    tmp_path: Path, ftype: FType, quant: str, file_type: int
) -> None:
    path = write_tiny_llama(tmp_path / "t.gguf", ftype=ftype)
    info = read_gguf(path)
    assert info.architecture == "llama"
    assert info.name == "tiny"
    assert (info.block_count, info.embedding_length, info.feed_forward_length) == (2, 64, 128)
    assert (info.head_count, info.head_count_kv, info.key_length, info.value_length) == (
        4,
        2,
        16,
        16,
    )
    assert info.context_length == 256
    assert info.vocab_size == TINY_VOCAB_SIZE == 260
    assert info.tokenizer_model == "llama"
    assert info.chat_template == DEFAULT_CHAT_TEMPLATE
    assert (info.quantization, info.file_type) == (quant, file_type)
    assert info.n_tensors == 3 + 9 * 2
    assert info.file_size == path.stat().st_size
    norms = [t for t in info.tensors if t.name.endswith("norm.weight")]
    assert norms and all(t.type_name == "F32" for t in norms)
    assert info.tensors[0].type_name == quant


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_tiny_llama(tmp_path / "a.gguf", seed=7)
    b = write_tiny_llama(tmp_path / "b.gguf", seed=7)
    c = write_tiny_llama(tmp_path / "c.gguf", seed=8)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    assert a.stat().st_size == c.stat().st_size


def test_size_follows_parameters_and_estimate_bounds_it(tmp_path: Path) -> None:
    kwargs = {"n_layers": 3, "n_embd": 256, "n_head": 8, "n_head_kv": 4, "n_ff": 512}
    path = write_tiny_llama(tmp_path / "m.gguf", ftype="f16", **kwargs)  # type: ignore[arg-type]
    size = path.stat().st_size
    estimate = tiny_model_bytes_estimate(ftype="f16", **kwargs)
    assert size <= estimate <= size + 16 * 1024
    info = read_gguf(path)
    assert (info.block_count, info.embedding_length, info.head_count_kv) == (3, 256, 4)
    # An F32 copy is about twice as large (norms are F32 in both).
    assert tiny_model_bytes_estimate(ftype="f32", **kwargs) > 1.9 * size


def test_no_chat_template(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_llama(tmp_path / "m.gguf", chat_template=None, name="x"))
    assert info.chat_template is None and info.name == "x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_embd": 66, "n_head": 4},
        {"n_head": 4, "n_head_kv": 3},
        {"n_layers": 0},
        {"n_embd": 12, "n_head": 4},  # head size 3 is odd
        {"ftype": "q4_0"},
        {"vocab": "gpt2"},
        {"n_ctx": 0},
    ],
)
def test_inconsistent_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        write_tiny_llama(tmp_path / "m.gguf", **kwargs)  # type: ignore[arg-type]


def test_vocabulary_is_byte_level_spm() -> None:
    tokens, scores, types = tiny_vocab()
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3] == "<0x00>" and tokens[258] == "<0xFF>" and tokens[259] == "\u2581"
    assert len(tokens) == len(scores) == len(types) == TINY_VOCAB_SIZE
    assert types[:3] == [2, 3, 3] and set(types[3:259]) == {6} and types[259] == 1


@pytest.mark.slow
def test_llama_cpp_loads_and_generates_deterministically(tmp_path: Path) -> None:
    import llama_cpp  # a hard dependency: a missing build must fail here, not skip

    path = write_tiny_llama(tmp_path / "tiny.gguf", ftype="f16")
    start = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=1, verbose=False, seed=0)
    load_s = time.perf_counter() - start
    try:
        assert load_s < 5.0, f"loading a tiny model took {load_s:.2f} s"
        assert llm.n_vocab() == TINY_VOCAB_SIZE
        assert llm.metadata.get("general.name") == "tiny"
        # Byte-level vocabulary: any text round-trips through the tokenizer.
        text = "Hello, Orin! ü"
        tokens = llm.tokenize(text.encode(), add_bos=False)
        assert llm.detokenize(tokens).decode() == text
        assert tokens.count(259) == 2  # the two spaces
        outs = []
        for _ in range(2):
            out = llm.create_completion("Hello", max_tokens=8, temperature=0.0)
            assert isinstance(out, dict)
            outs.append(out["choices"][0]["text"])
        assert outs[0] == outs[1]
        assert isinstance(outs[0], str)
    finally:
        llm.close()
