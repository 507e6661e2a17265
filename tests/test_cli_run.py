"""``orin-console run`` and ``orin-console plan`` on tiny models, and end to end on SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from orin_console.cli.main import main
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

from conftest import REPO_ROOT, demo_model
from runner_procs import marked_processes

CODE_PROMPT = "Write a Python function that reverses a list:\n```python\ndef rev(xs):\n```"


def catalog_text() -> str:
    return ('[[models]]\nid = "alpha"\npath = "alpha.gguf"\ntasks = ["chat"]\ntier = "ram"\ncontext = 512\n\n'
            '[[models]]\nid = "beta"\npath = "beta.gguf"\ntasks = ["code"]\ntier = "swap"\ncontext = 512\n')


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-models")
    write_tiny_llama(folder / "alpha.gguf", n_ctx=512)
    write_tiny_llama(folder / "beta.gguf", seed=7, n_ctx=512)
    return folder


@pytest.fixture
def catalog(tmp_path: Path, tiny_pair: Path) -> Path:
    for name in ("alpha.gguf", "beta.gguf"):
        (tmp_path / name).symlink_to(tiny_pair / name)
    path = tmp_path / "models.toml"
    path.write_text(catalog_text())
    return path


def run(catalog: Path, *args: str) -> int:
    return main(["--catalog", str(catalog), "run", *args])


def runners() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


def test_run_streams_the_answer_and_says_which_model_and_why(catalog: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run(catalog, "Hello! How are you today?", "--max-tokens", "12", "--temperature", "0") == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and not any(ord(c) < 32 and c not in "\n\t" for c in out)
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("— alpha (auto: chat, fits chat, must load from disk; runner-up beta)")
    assert "loaded into ram in" in summary and "TTFT" in summary and "tok/s" in summary
    assert " tokens · " in summary and summary.split(" · ")[-1] in ("stop", "length")
    assert runners() == []  # the manager ended its runners


def test_run_json_manual_and_code(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(catalog, CODE_PROMPT, "--max-tokens", "8", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "beta" and data["task"] == "code" and data["mode"] == "auto"
    assert data["tokens"] >= 0 and data["prompt_tokens"] > 0 and data["finish_reason"] in ("stop", "length")
    assert "beta for code (auto)" in data["explanation"] and data["load_s"] is not None
    assert run(catalog, "Hi there", "--model", "beta", "--max-tokens", "4", "--no-stream", "--explain") == 0
    err = capsys.readouterr().err
    assert "— beta (manual: chat" in err and "chosen by the operator" in err
    assert "task: chat" in err and "prompt format: chat" in err
    assert run(catalog, "Hi there", "--mode", "hybrid", "--model", "beta", "--max-tokens", "4", "--raw") == 0
    err = capsys.readouterr().err
    assert "— alpha (hybrid: chat" in err


@pytest.mark.parametrize(("args", "message"), [
    (("--max-tokens", "0"), "max_tokens = 0: must be an integer from 1 to 131072"),
    (("--max-tokens", "600"), "max_tokens = 600: must be an integer from 1 to 512 (the context of `alpha`)"),
    (("--temperature", "5"), "temperature = 5.0: must be a number from 0 to 2"),
    (("--top-p", "0"), "top_p = 0.0: must be a number greater than 0 and at most 1"),
    (("--seed", "-3"), "seed = -3: must be an integer from 0"),
    (("--model", "zzz"), "no model 'zzz' in the catalog (known: alpha, beta)"),
    (("--mode", "auto", "--model", "alpha"), "--model needs --mode manual or hybrid"),
])
def test_bad_input_is_one_line_and_exit_2(catalog: Path, capsys: pytest.CaptureFixture[str],
                                          args: tuple[str, ...], message: str) -> None:
    assert run(catalog, "Hello", *args) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("orin-console: error: ") and message in err


def test_empty_prompt_and_bad_mode(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(catalog, "   ") == 2
    assert "prompt = '   ': must be a non-empty string" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        run(catalog, "Hello", "--mode", "fast")
    assert info.value.code == 2


def test_model_that_cannot_be_admitted(catalog: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORIN_MAX_MODEL_GB", "0.01")  # smaller than any model
    assert run(catalog, "Hello") == 2  # auto: nothing can be admitted, a selection error
    assert "no model can serve chat: every candidate is refused by admission" in capsys.readouterr().err
    assert run(catalog, "Hello", "--model", "alpha") == 1  # manual: the load is refused
    err = capsys.readouterr().err
    assert "orin-console: alpha could not answer: cannot load `alpha`" in err
    assert "over the per-model maximum" in err


def test_plan_after_runs(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert run(catalog, "Hello! How are you?", "--max-tokens", "4") == 0
    capsys.readouterr()
    assert main(["--catalog", str(catalog), "plan"]) == 0
    out, err = capsys.readouterr()
    assert "Placement plan" in out and "alpha → ram: 2.00 recent requests" in out
    assert "beta → disk" in out and "load alpha disk → ram" in out and "nothing was loaded" in err
    assert main(["--catalog", str(catalog), "plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["placements"] == {"alpha": "ram", "beta": "disk"} and data["fits"]["ram"] is True
    assert runners() == []


def test_ctrl_c_cancels_and_ends_the_runner(catalog: Path) -> None:
    mark = uuid.uuid4().hex
    env = {**os.environ, "ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.2",
           "ORIN_TEST_MARK": mark}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orin_console", "--catalog", str(catalog), "run", "hello",
         "--max-tokens", "64", "--temperature", "0", "--raw"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=catalog.parent)
    assert proc.stdout is not None
    assert proc.stdout.read(1)  # the answer has started
    assert len(marked_processes(mark)) >= 2  # the console and its runner
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    assert "· cancelled" in err.decode()
    wait_until(lambda: marked_processes(mark) == [], timeout=5, interval=0.05, what="the console and runner to exit")


@pytest.mark.slow
def test_end_to_end_with_smollm2(tmp_path: Path) -> None:
    demo_model("SmolLM2-135M-Instruct.Q4_1.gguf")
    env = {**os.environ, "ORIN_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "orin_console", "--catalog", str(REPO_ROOT / "models.toml"), "run", "Say hello",
         "--max-tokens", "16", "--temperature", "0"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip()) > 3
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("— smollm2 (auto: chat, fits chat"), proc.stderr
    assert "runner-up gemma3" in summary and "tok/s" in summary and "16 tokens · length" in summary
    plan = subprocess.run(
        [sys.executable, "-m", "orin_console", "--catalog", str(REPO_ROOT / "models.toml"), "plan", "--json"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["placements"] == {"smollm2": "ram", "gemma3": "disk"}
