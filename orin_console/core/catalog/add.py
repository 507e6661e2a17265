"""Adding models to the catalog and describing what is in it (no model is loaded).

Every file is checked by the bounded GGUF reader before it is accepted, so a crafted or
truncated file never reaches the catalog, let alone llama.cpp.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from orin_console.core.catalog.store import (
    ID_PATTERN,
    TASKS,
    TIERS,
    Catalog,
    CatalogEntry,
    CatalogStore,
    explain_entry_error,
)
from orin_console.core.errors import CatalogError, GGUFError
from orin_console.core.gguf import GGUFInfo, read_gguf
from orin_console.core.text import sanitize, sanitize_path
from orin_console.core.tier import Tier

DEFAULT_CONTEXT = 2048
MIN_CONTEXT = 64
MAX_CONTEXT = 131072


@dataclass(frozen=True)
class Refusal:
    """A file that was not added, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class AddResult:
    """What ``add_models`` did: the entries written and the files refused."""

    added: tuple[CatalogEntry, ...]
    refused: tuple[Refusal, ...]
    catalog: Catalog


@dataclass(frozen=True)
class ModelRow:
    """One catalog entry with what its file's header says (or why it cannot be read)."""

    entry: CatalogEntry
    path: Path
    info: GGUFInfo | None
    problem: str | None


def discover(path: Path) -> list[Path]:
    """The GGUF files at ``path``: the file itself, or ``*.gguf`` under a folder (sorted).

    Raises:
        CatalogError: the path does not exist, is neither a file nor a folder (a FIFO, a
            device), or a folder holds no ``.gguf`` file.
    """
    if "\x00" in os.fspath(path):
        raise CatalogError(f"{sanitize_path(path)}: the name holds a NUL character, which no file name can "
                           "contain; give the path of a .gguf file or a folder")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CatalogError(f"{sanitize_path(path)}: no such file or folder") from None
    except OSError as exc:  # a symlink loop, a name too long, a folder not searchable
        raise CatalogError(f"{sanitize_path(path)}: cannot be read: {exc.strerror or exc}; "
                           "give the path of a .gguf file or a folder") from None
    if stat.S_ISREG(mode):
        return [path]
    if not stat.S_ISDIR(mode):
        raise CatalogError(f"{sanitize_path(path)}: not a regular file or a folder (a FIFO, a device or a socket); "
                           "give the path of a .gguf file or a folder")
    try:
        found = sorted(
            p for p in path.rglob("*.gguf")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    except OSError as exc:
        raise CatalogError(f"{sanitize_path(path)}: the folder cannot be read: {exc.strerror or exc}") from None
    if not found:
        raise CatalogError(f"{sanitize_path(path)}: no .gguf files in this folder")
    return found


def slug(text: str) -> str:
    """A catalog id made from a file name: lower-case, safe characters, at most 64 long."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._").lower()
    return (value or "model")[:64]


def _stored_path(catalog: Catalog, file: Path) -> str:
    """Relative to the catalog's folder when the file lies under it, else absolute."""
    absolute = Path(os.path.abspath(file))
    try:
        return absolute.relative_to(catalog.path.parent).as_posix()
    except ValueError:
        return str(absolute)


def _unique_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base[:60]}-{n}" in taken:
        n += 1
    return f"{base[:60]}-{n}"


def propose_entries(
    catalog: Catalog,
    path: Path,
    *,
    model_id: str | None = None,
    tasks: Sequence[str] | None = None,
    tier: str | None = None,
    context: int | None = None,
) -> tuple[list[CatalogEntry], list[Refusal]]:
    """Validate the files at ``path`` and build catalog entries for them (writes nothing).

    Defaults: id from the file name (made unique), tasks ``chat`` when the file carries a
    chat template and ``completion`` otherwise, tier ``swap``, context the smaller of 2048
    and the model's trained context.

    Raises:
        CatalogError: bad arguments (unknown task or tier, ``model_id`` with a folder of
            several files, an id already taken).
    """
    for task in tasks or ():
        if task not in TASKS:
            raise CatalogError(f"unknown task '{sanitize(task)}' (allowed: {', '.join(TASKS)})")
    if tasks is not None and not tasks:
        raise CatalogError(f"no task given (allowed: {', '.join(TASKS)})")
    if tasks and len(set(tasks)) != len(tasks):
        twice = next(t for t in tasks if list(tasks).count(t) > 1)
        raise CatalogError(f"task '{twice}' is given twice; list each task once")
    if tier is not None and tier not in TIERS:
        raise CatalogError(f"unknown tier '{sanitize(tier)}' (allowed: {', '.join(TIERS)})")
    if model_id is not None and re.fullmatch(ID_PATTERN, model_id) is None:
        raise CatalogError(f"id '{sanitize(model_id)[:80]}' is not allowed: it must start with a letter or digit "
                           "and use only letters, digits, '.', '_' and '-' (at most 64 characters)")
    if context is not None and not MIN_CONTEXT <= context <= MAX_CONTEXT:
        raise CatalogError(f"context {context} is out of range: give {MIN_CONTEXT} to {MAX_CONTEXT} tokens "
                           "(and at most the model's trained context)")
    files = discover(path)
    if model_id is not None and len(files) > 1:
        raise CatalogError(f"--id names one model but {sanitize_path(path)} holds {len(files)} .gguf files")
    if model_id is not None and model_id in catalog:
        raise CatalogError(f"a model called '{sanitize(model_id)}' is already in {sanitize_path(catalog.path)}")
    taken = {entry.id for entry in catalog}
    entries: list[CatalogEntry] = []
    refused: list[Refusal] = []
    seen_files: set[str] = set()
    for file in files:
        existing = catalog.find_by_file(file)
        if existing is not None:
            refused.append(Refusal(file, f"already in the catalog as '{existing.id}'"))
            continue
        real = os.path.realpath(file)
        if real in seen_files:
            continue
        try:
            info = read_gguf(file)
        except GGUFError as exc:
            refused.append(Refusal(file, str(exc)))
            continue
        trained = info.context_length or DEFAULT_CONTEXT
        if context is not None and info.context_length and context > info.context_length:
            refused.append(Refusal(file, f"context {context} is above the model's trained context "
                                         f"{info.context_length}; give a context of {info.context_length} or less"))
            continue
        stored = _stored_path(catalog, file)
        try:
            stored.encode("utf-8")
        except UnicodeEncodeError:
            refused.append(Refusal(file, "its path is not valid UTF-8, which the catalog (a UTF-8 TOML file) "
                                         "cannot hold; rename the file (or its folder) and add it again"))
            continue
        seen_files.add(real)
        new_id = model_id if model_id is not None else _unique_id(slug(file.stem), taken)
        taken.add(new_id)
        try:
            entries.append(CatalogEntry(
                id=new_id,
                path=stored,
                tasks=tuple(tasks) if tasks else (("chat",) if info.chat_template else ("completion",)),  # type: ignore[arg-type]
                tier=Tier(tier) if tier else Tier.SWAP,
                context=context if context is not None else max(MIN_CONTEXT, min(DEFAULT_CONTEXT, trained)),
            ))
        except ValidationError as exc:
            raise CatalogError(f"{sanitize_path(file)}: {explain_entry_error(exc)}") from None
    return entries, refused


def add_models(store: CatalogStore, path: Path, **options: object) -> AddResult:
    """Validate the files at ``path`` and append them to the catalog in one atomic write.

    The entries are proposed while the catalog's file lock is held, against the catalog as
    it is on disk then, so parallel ``models add`` runs neither lose each other's entries
    nor hand out the same id twice. Options are those of :func:`propose_entries`.
    """
    proposed: list[tuple[list[CatalogEntry], list[Refusal]]] = []

    def plan(fresh: Catalog) -> list[CatalogEntry]:
        proposed.append(propose_entries(fresh, path, **options))  # type: ignore[arg-type]
        return proposed[-1][0]

    catalog = store.add_planned(plan)
    entries, refused = proposed[-1]
    return AddResult(tuple(entries), tuple(refused), catalog)


def context_above_trained(context: int, trained: int | None) -> str | None:
    """Why an entry's ``context`` does not suit a model trained with ``trained`` tokens (above
    it), or None (also when the header does not say)."""
    if trained and context > trained:
        return f"context {context} is above the model's trained context {trained}; set context = {trained} or less"
    return None


def describe(catalog: Catalog) -> list[ModelRow]:
    """Each entry with its file's header facts, or the reason they cannot be read."""
    rows = []
    for entry in catalog:
        path = catalog.model_path(entry)
        try:
            info, problem = read_gguf(path), None
        except GGUFError as exc:
            info, problem = None, sanitize(f"{exc.field}: {exc.reason}")
        if info is not None and (above := context_above_trained(entry.context, info.context_length)) is not None:
            problem = above
        rows.append(ModelRow(entry, path, info, problem))
    return rows
