"""The model catalog (``models.toml``): validated by pydantic, saved atomically by tomlkit.

The file holds an array of tables, one per model::

    [[models]]
    id = "smollm2"                         # unique; letters, digits, '.', '_', '-'
    path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"   # relative to this file
    tasks = ["chat"]                        # chat, code, classification, summarisation, ...
    tier = "ram"                            # preferred tier: ram, swap or disk
    context = 2048                          # context size (tokens) the runner is started with
    priority = 50                           # 0..100, higher wins ties in auto selection
    pin = false                             # a pinned model keeps its tier
    sha256 = "..."                          # optional; checked before loading

A file that fails validation is refused whole: :class:`CatalogStore` keeps the last good
catalog in force and the error names the entry, the field, its line and what is allowed.
Values are strict: ``priority = true`` or ``context = "4096"`` is refused, not coerced (the
file is edited by hand, and a coerced value is a silent surprise). Two entries naming one file
(``a.gguf``, ``./a.gguf``, its absolute path) are refused too; the same weights under a
second id need a second name (a symbolic link), a deliberate and visible choice.

The file is read only when it is a regular file of at most :data:`CATALOG_LIMIT` bytes.
Edits from several processes at once (``models add`` run in parallel, the console pinning a
model while the operator adds one) are serialised by an exclusive lock on
``.models.toml.lock`` beside the file; each edit re-reads the file under the lock, so no
edit is lost. A catalog that is a symbolic link is edited through the link: its target
changes and the link stays.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator
from tomlkit.items import AoT, Table

from orin_console.core.catalog.explain import MAX_PROBLEMS, LineIndex, explain_error
from orin_console.core.errors import CatalogError
from orin_console.core.files import (
    CONFIG_FILE_LIMIT,
    atomic_write_text,
    exclusive_lock,
    read_text_file,
)
from orin_console.core.text import sanitize, sanitize_path
from orin_console.core.tier import Tier

Task = Literal["chat", "code", "classification", "summarisation", "extraction", "completion"]
TASKS: tuple[str, ...] = get_args(Task)
TIERS: tuple[str, ...] = tuple(tier.value for tier in Tier)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

CATALOG_LIMIT = CONFIG_FILE_LIMIT
"""The largest catalog file read (1 MB; a thousand entries with checksums take about 250 KB)."""

_NEW_FILE_HEADER = """\
# Orin Console model catalog. One [[models]] table per model; paths are relative to this file.
# Fields: id, path, tasks (chat, code, classification, summarisation, extraction, completion),
# tier (ram, swap, disk), context, priority (0-100), pin, sha256 (optional).
# Add models with `orin-console models add PATH-or-FOLDER`, or edit by hand: a bad edit is
# refused whole and the last good catalog stays in force.
"""


class CatalogEntry(BaseModel):
    """One model in the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(pattern=ID_PATTERN, description="Unique name used everywhere else.")
    path: StrictStr = Field(min_length=1, max_length=4096, description="GGUF file, relative to the catalog file.")
    tasks: tuple[Task, ...] = Field(min_length=1, description="What the model is good for.")
    tier: Tier = Field(Tier.SWAP, description="Preferred tier when loaded.")
    context: StrictInt = Field(2048, ge=64, le=131072, description="Context size in tokens.")
    priority: StrictInt = Field(50, ge=0, le=100, description="Tie-breaker in auto selection.")
    pin: StrictBool = Field(False, description="A pinned model keeps its tier.")
    sha256: StrictStr | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="Expected checksum (lower-case hex)."
    )

    @field_validator("tasks")
    @classmethod
    def _no_repeated_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a task twice")
        return value

    @field_validator("path")
    @classmethod
    def _no_nul_in_path(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("holds a NUL character, which no file name can contain")
        return value

    def to_toml(self) -> dict[str, Any]:
        """The entry as the plain values written to ``models.toml`` (defaults included)."""
        data = self.model_dump(exclude_none=True)
        data["tasks"] = list(self.tasks)
        data["tier"] = self.tier.value  # plain text in the file, not the enum
        return data


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; an unknown user leaves it as it is
    (``Path.expanduser`` raises there)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def _entry_file(catalog_path: Path, entry: CatalogEntry) -> Path:
    """The entry's file as an absolute path (relative paths are taken from the catalog's folder)."""
    candidate = expand_user(entry.path)
    if not candidate.is_absolute():
        candidate = catalog_path.parent / candidate
    return Path(os.path.abspath(candidate))


class Catalog:
    """An immutable, validated catalog: entries in file order, looked up by id."""

    def __init__(self, path: Path, entries: Iterable[CatalogEntry]) -> None:
        self.path = path
        self.entries: tuple[CatalogEntry, ...] = tuple(entries)
        self._by_id = {entry.id: entry for entry in self.entries}

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_id

    def get(self, model_id: str) -> CatalogEntry:
        """The entry called ``model_id``.

        Raises:
            CatalogError: no such model (the message lists the ids there are).
        """
        try:
            return self._by_id[model_id]
        except KeyError:
            known = ", ".join(self._by_id) or "none"
            raise CatalogError(
                f"no model '{sanitize(model_id)}' in {sanitize_path(self.path)} (known: {known})"
            ) from None

    def model_path(self, entry: CatalogEntry) -> Path:
        """The entry's file as an absolute path (relative paths are taken from the catalog's folder)."""
        return _entry_file(self.path, entry)

    def find_by_file(self, file: Path) -> CatalogEntry | None:
        """The entry whose file resolves to the same real path as ``file``, if any."""
        target = os.path.realpath(file)
        for entry in self.entries:
            if os.path.realpath(self.model_path(entry)) == target:
                return entry
        return None


def _plain(value: Any) -> Any:
    """A value as tomlkit should write it: tuples as lists, a :class:`Tier` as its name."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Tier):
        return value.value
    return value


def _entry_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return f"model '{raw['id'][:64]}' (entry {index + 1})"
    return f"entry {index + 1}"


def explain_entry_error(exc: ValidationError) -> str:
    """A pydantic error about a :class:`CatalogEntry` as one plain line (no pydantic dump)."""
    return "; ".join(explain_error(err, CatalogEntry.model_fields) for err in exc.errors())


def parse_catalog(text: str, path: Path) -> Catalog:
    """Validate catalog text. Every problem is collected; any problem refuses the whole file.

    Raises:
        CatalogError: the file is not TOML, has unknown top-level keys, an invalid entry or a
            duplicate id. The message names each entry and field at fault.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{sanitize_path(path)}: not valid TOML: {sanitize(str(exc))}") from None
    except RecursionError:
        raise CatalogError(f"{sanitize_path(path)}: not valid for the console: arrays or tables nested too "
                           "deeply (a catalog needs two levels); fix or remove the nested value") from None
    problems: list[str] = []
    extra = sorted(set(data) - {"models"})
    if extra:
        from orin_console.core.settings import Settings  # late: only for this hint

        looks = " (this file looks like a config file: give it with --config, not --catalog)" \
            if set(extra) & set(Settings.model_fields) else ""
        problems.append(f"unknown top-level key(s) {sanitize(', '.join(extra))[:200]} (only [[models]] tables "
                        f"belong here){looks}")
    raw_models = data.get("models", [])
    if not isinstance(raw_models, list):
        raise CatalogError(f"{sanitize_path(path)}: 'models' must be an array of tables ([[models]])")
    entries: list[CatalogEntry] = []
    seen: dict[str, int] = {}
    files: dict[str, int] = {}
    lines = LineIndex(text)
    for index, raw in enumerate(raw_models):
        label = _entry_label(raw, index)
        if not isinstance(raw, dict):
            problems.append(f"{label}: must be a table ([[models]])")
            continue
        try:
            entry = CatalogEntry.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "(entry)"
                line = lines.field_line(index, field) if len(problems) < MAX_PROBLEMS else None
                where = f" (line {line})" if line is not None else ""
                problems.append(f"{label}: {explain_error(err, CatalogEntry.model_fields)}{where}")
            continue
        if entry.id in seen:
            problems.append(f"{label}: id '{entry.id}' is already used by entry {seen[entry.id] + 1}")
            continue
        real = os.path.normpath(_entry_file(path, entry))  # the name, not the symlink's target
        if real in files:
            problems.append(f"{label}: its file {sanitize_path(entry.path)} is already the file of entry "
                            f"{files[real] + 1}; each file is in the catalog once (remove one entry)")
            continue
        seen[entry.id] = index
        files[real] = index
        entries.append(entry)
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS] + ([f"and {more} more problem(s)"] if more > 0 else [])
        raise CatalogError(f"{sanitize_path(path)}: refused, the last good catalog stays in force: "
                           + "; ".join(shown))
    return Catalog(path, entries)


class CatalogStore:
    """Owns ``models.toml``: loads it, keeps the last good version, and edits it safely.

    All edits take the file lock (see :meth:`_edit`), re-read the file with tomlkit (so
    comments, order and formatting survive, and so do other processes' edits), validate the
    result as a whole, and write it atomically. Thread-safe and process-safe.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if "\x00" in os.fspath(path):
            raise CatalogError(f"the catalog path '{sanitize_path(path)}' holds a NUL character, which no file "
                               "name can contain; give the path of a models.toml file")
        self.path = Path(os.path.abspath(expand_user(path)))
        self._lock = threading.RLock()
        self._current: Catalog | None = None
        self._stamp: tuple[int, int] | None = None

    @property
    def current(self) -> Catalog:
        """The catalog in force (loading it on first use)."""
        with self._lock:
            if self._current is None:
                return self.load()
            return self._current

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def load(self) -> Catalog:
        """Read and validate the file; on success it becomes the catalog in force.

        A missing file is an empty catalog (``models add`` creates it).

        Raises:
            CatalogError: the file is invalid; the previous catalog stays in force.
        """
        with self._lock:
            stamp = self._file_stamp()
            text = self._read() if stamp else ""
            catalog = parse_catalog(text, self.path)
            self._current, self._stamp = catalog, stamp
            return catalog

    def reload_if_changed(self) -> Catalog | None:
        """Re-validate the file when it changed on disk since the last load.

        Returns:
            The new catalog, or ``None`` when the file is unchanged.

        Raises:
            CatalogError: the new contents are invalid (the last good catalog stays).
        """
        with self._lock:
            if self._file_stamp() == self._stamp and self._current is not None:
                return None
            stamp = self._file_stamp()
            try:
                return self.load()
            except CatalogError:
                self._stamp = stamp  # report a bad edit once, not on every poll
                raise

    def _read(self) -> str:
        """The file's text (bounded, regular files only); FileNotFoundError when absent."""
        return read_text_file(self.path, limit_bytes=CATALOG_LIMIT, what="catalog", error=CatalogError)

    def _edit(self, change: Callable[[Catalog, AoT], object]) -> Catalog:
        """Apply ``change`` to the file as it is now on disk, under the file lock.

        Holding :func:`~orin_console.core.files.exclusive_lock`, the file is re-read and
        validated (a broken file is not edited), ``change`` gets that fresh catalog and the
        tomlkit array of tables to modify, and the result is validated and written
        atomically. When ``change`` returns ``False`` nothing is written.
        """
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(
                    f"{sanitize_path(self.path.parent)}: cannot create the catalog's folder: "
                    f"{exc.strerror or exc}; give a catalog path in a folder that exists and can be written"
                ) from None
            with exclusive_lock(self.path, what="catalog", error=CatalogError):
                try:
                    text = self._read()
                except FileNotFoundError:
                    text = _NEW_FILE_HEADER
                fresh = parse_catalog(text, self.path)  # refuse to edit on top of a broken file
                doc = tomlkit.parse(text)
                models = doc.get("models")
                if models is None:
                    models = tomlkit.aot()
                    doc.append("models", models)
                if change(fresh, models) is False:
                    self._current, self._stamp = fresh, self._file_stamp()
                    return fresh
                new_text = tomlkit.dumps(doc)
                catalog = parse_catalog(new_text, self.path)
                atomic_write_text(self.path, new_text, what="catalog", locked=True)
                self._current, self._stamp = catalog, self._file_stamp()
                return catalog

    def add(self, entries: Iterable[CatalogEntry]) -> Catalog:
        """Append entries (one atomic write for all of them).

        Raises:
            CatalogError: an id is already taken or the file is invalid.
        """
        new = list(entries)
        return self.add_planned(lambda _fresh: new)

    def add_planned(self, plan: Callable[[Catalog], Iterable[CatalogEntry]]) -> Catalog:
        """Append the entries ``plan`` proposes for the catalog as it is under the lock.

        ``plan`` runs while the file lock is held, with the catalog just re-read from disk,
        so ids it makes unique and files it finds already present are judged against every
        other process's edits. Nothing is written when it proposes no entry.

        Raises:
            CatalogError: an id is already taken, the file is invalid, or ``plan`` raised it.
        """

        def change(fresh: Catalog, models: AoT) -> bool:
            new = list(plan(fresh))
            for entry in new:
                if entry.id in fresh:
                    raise CatalogError(
                        f"a model called '{entry.id}' is already in {sanitize_path(self.path)}"
                    )
                table = tomlkit.table()
                for key, value in entry.to_toml().items():
                    table.add(key, value)
                models.append(table)
            return bool(new)

        return self._edit(change)

    def remove(self, model_id: str) -> Catalog:
        """Remove the entry called ``model_id`` (the file stays on disk).

        Raises:
            CatalogError: no such model.
        """

        def change(fresh: Catalog, models: AoT) -> None:
            fresh.get(model_id)
            keep = [t for t in models if t.get("id") != model_id]
            models.clear()
            for table in keep:
                models.append(table)

        return self._edit(change)

    def update(self, model_id: str, **fields: Any) -> Catalog:
        """Change fields of one entry in place (e.g. ``pin=True``, ``tier="ram"``).

        Raises:
            CatalogError: no such model, or the new values are invalid.
        """

        def change(fresh: Catalog, models: AoT) -> None:
            fresh.get(model_id)
            for table in models:
                if isinstance(table, Table) and table.get("id") == model_id:
                    for key, value in fields.items():
                        if value is None:
                            table.pop(key, None)
                        else:
                            table[key] = _plain(value)

        return self._edit(change)
