"""Prepare the GPU kit: everything a GPU machine without network needs for `scripts/gpu_check.sh`.

Run here (network needed, no GPU) with `make gpu-kit`; the kit goes to `gpu-kit/` (git-ignored)
and must stay under 64 MB, the most a GPU machine is lent alongside the working tree:

- `llama_cpp_python-0.3.36.tar.gz`: the sdist trimmed of what a build never reads (`.git/`,
  `vendor/llama.cpp/models/*.gguf`, `vendor/llama.cpp/docs/`): about 76 MB becomes about 13 MB;
- `wheels/`: the project's runtime dependencies (llama-cpp-python's own included, but not
  llama-cpp-python itself) as binary wheels for CPython 3.12 on manylinux x86-64, and the
  project's own wheel;
- `model.gguf`: a generated random-weight llama model of a few tens of MB (`write_tiny_llama`).

    .venv/bin/python scripts/gpu_kit.py [--out gpu-kit] [--python-version 3.12]
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 64 * 1024 * 1024
LLAMA_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{LLAMA_VERSION}.tar.gz"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
LLAMA_RUNTIME_DEPS = ("typing-extensions>=4.5", "diskcache>=5.6.1", "jinja2>=2.11.3")
"""llama-cpp-python's own requirements: its sdist is installed with --no-deps on the GPU machine."""

MODEL_SHAPE = {"n_layers": 8, "n_embd": 384, "n_head": 6, "n_head_kv": 2, "n_ff": 768,
               "n_ctx": 2048, "ftype": "f16"}
"""The kit's test model: about 21 MB, 8 blocks (llama.cpp offloads 9 layers: the blocks and the output)."""


def sdist_member_kept(name: str) -> bool:
    """Whether a member of the llama-cpp-python sdist goes into the trimmed one.

    ``name`` is the member's path inside the tarball (``llama_cpp_python-0.3.36/...``).
    Left out: anything under a ``.git`` entry (the repository and the submodule's), the
    vocabulary GGUFs in ``vendor/llama.cpp/models/`` (test data) and ``vendor/llama.cpp/docs/``.
    """
    parts = PurePosixPath(name).parts
    rel = parts[1:]  # below the top folder
    if ".git" in parts:
        return False
    if rel[:3] == ("vendor", "llama.cpp", "docs"):
        return False
    return not (rel[:3] == ("vendor", "llama.cpp", "models") and name.endswith(".gguf"))


def trim_sdist(source: Path, target: Path) -> tuple[int, int]:
    """Repack the sdist ``source`` into ``target`` without what :func:`sdist_member_kept` drops.

    Returns:
        (members kept, members dropped).
    """
    kept = dropped = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with tarfile.open(source, "r:gz") as src, tarfile.open(partial, "w:gz", compresslevel=9) as dst:
        for member in src:
            if not sdist_member_kept(member.name):
                dropped += 1
                continue
            kept += 1
            data = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, io.BytesIO(data.read()) if data is not None else None)
    partial.replace(target)
    return kept, dropped


def runtime_requirements(pyproject: Path) -> list[str]:
    """The project's runtime dependencies without llama-cpp-python, plus llama-cpp-python's own."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    own = [d for d in deps if re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower().replace("_", "-")
           != "llama-cpp-python"]
    return own + list(LLAMA_RUNTIME_DEPS)


def wheel_download_command(requirements: list[str], dest: Path, python_version: str) -> list[str]:
    """The ``pip download`` command for binary wheels for the GPU machine's Python."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", python_version,
           "--implementation", "cp", "-d", str(dest), "-q"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return cmd + requirements


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-kit")
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args(argv)
    out: Path = args.out
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)

    sdist = out / SDIST_NAME
    if sdist.is_file():
        print(f"{sdist.name}: already trimmed")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                  f"llama-cpp-python=={LLAMA_VERSION}", "-d", tmp, "-q"])
            kept, dropped = trim_sdist(Path(tmp) / SDIST_NAME, sdist)
        print(f"{sdist.name}: {kept} members kept, {dropped} dropped")

    _run(wheel_download_command(runtime_requirements(ROOT / "pyproject.toml"), wheels, args.python_version))
    for old in wheels.glob("orin_console-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:  # pip wheel writes build/ into the tree; build from a copy
        src = Path(tmp) / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "models", "gpu-kit", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)])

    model = out / "model.gguf"
    sys.path.insert(0, str(ROOT))
    from orin_console.testing.tiny_models import write_tiny_llama

    write_tiny_llama(model, name="gpu-kit", ascii_output=True, **MODEL_SHAPE)  # type: ignore[arg-type]

    size = folder_bytes(out)
    print(f"gpu kit: {out} holds {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB) in "
          f"{sum(1 for p in out.rglob('*') if p.is_file())} files; limit {LIMIT_BYTES / 2**20:.0f} MiB")
    if size >= LIMIT_BYTES:
        print(f"gpu kit: TOO LARGE by {(size - LIMIT_BYTES) / 2**20:.1f} MiB: a GPU machine takes at most "
              "64 MiB of ignored files", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
