"""What a model file's GGUF header says, in a few display facts, read once per file.

The catalog's columns (size, quantisation) and the API's ModelInfo need a handful of header
facts for every catalog model, often (each ``GET /models/list``, each repaint of a console).
:class:`FileFactsCache` reads each file's header once per file identity ``(real path, size,
mtime_ns)``, as :class:`~orin_console.core.manager.predictions.PredictionCache` does, and keeps
the refusal of an invalid file too, so a hostile or broken file is not parsed again on every
call; a file that changes (a new mtime or size) is read afresh.

Every text in a :class:`FileFacts` is sanitised (:func:`~orin_console.core.text.sanitize`):
the architecture and the quantisation name come from the file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from orin_console.core.catalog.add import context_above_trained
from orin_console.core.catalog.store import Catalog, CatalogEntry
from orin_console.core.errors import GGUFError
from orin_console.core.gguf import GGUFInfo, read_gguf
from orin_console.core.manager.predictions import FileIdentity, file_identity
from orin_console.core.text import sanitize

__all__ = ["MAX_FACT_FILES", "FileFacts", "FileFactsCache", "context_problem", "facts_of"]

MAX_FACT_FILES = 1024
"""Files whose facts are remembered (the oldest is forgotten first)."""


@dataclass(frozen=True)
class FileFacts:
    """A model file's header facts (all None when the header could not be read).

    Attributes:
        file_size: the file's bytes.
        quantization: ``"Q4_K_M"`` and the like (sanitised).
        architecture: ``general.architecture`` (sanitised), e.g. ``"llama"``.
        n_params: parameters (elements over all tensors).
        context_length: the context the model was trained with (``<arch>.context_length``).
        name: ``general.name`` (sanitised), when the file has one.
        problem: why the header could not be read, or what is wrong with the entry for this
            file (a context above the trained one), sanitised; None when all is well.
    """

    file_size: int | None = None
    quantization: str | None = None
    architecture: str | None = None
    n_params: int | None = None
    context_length: int | None = None
    name: str | None = None
    problem: str | None = None


def facts_of(info: GGUFInfo) -> FileFacts:
    """The display facts of a validated header."""
    return FileFacts(file_size=info.file_size, quantization=sanitize(info.quantization) or None,
                     architecture=sanitize(info.architecture) or None, n_params=info.n_params,
                     context_length=info.context_length, name=sanitize(info.name) if info.name else None)


def context_problem(entry: CatalogEntry, facts: FileFacts) -> str | None:
    """Why ``entry``'s context does not suit its file (above the trained context), or None."""
    return context_above_trained(entry.context, facts.context_length)


class FileFactsCache:
    """Header facts per file, read once per file identity (thread-safe).

    Args:
        reader: reads and validates a header (raises :class:`GGUFError`); the core's
            ``manager.predictions.header`` shares the prediction cache's reads.
        limit: files remembered.
    """

    def __init__(self, reader: Callable[[Path], GGUFInfo] = read_gguf, *, limit: int = MAX_FACT_FILES) -> None:
        self._reader = reader
        self._limit = limit
        self._lock = threading.Lock()
        self._facts: dict[FileIdentity, FileFacts] = {}
        self.reads = 0
        """Headers read so far (a test and a benchmark check that a second call reads none)."""

    def get(self, path: Path) -> FileFacts:
        """The facts of the file at ``path``; a file that cannot be read has only ``problem``."""
        key = file_identity(path)
        if key is not None:
            with self._lock:
                found = self._facts.get(key)
            if found is not None:
                return found
        with self._lock:
            self.reads += 1
        try:
            facts = facts_of(self._reader(path))
        except GGUFError as exc:
            facts = FileFacts(problem=sanitize(f"{exc.field}: {exc.reason}"))
        if key is not None:  # a missing file is not remembered: it may appear
            with self._lock:
                if len(self._facts) >= self._limit:
                    self._facts.pop(next(iter(self._facts)))
                self._facts[key] = facts
        return facts

    def for_entry(self, catalog: Catalog, entry: CatalogEntry) -> FileFacts:
        """The facts of ``entry``'s file, with ``problem`` set when its context is above the
        model's trained context (as :func:`orin_console.core.catalog.add.describe` says)."""
        facts = self.get(catalog.model_path(entry))
        if facts.problem is None and (problem := context_problem(entry, facts)) is not None:
            return replace(facts, problem=problem)
        return facts

    def for_catalog(self, catalog: Catalog) -> dict[str, FileFacts]:
        """Each entry's facts, by id, in catalog order."""
        return {entry.id: self.for_entry(catalog, entry) for entry in catalog}
