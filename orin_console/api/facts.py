"""The catalog models' file facts (size, quantisation, architecture...) as the API sends them.

The manager's :class:`~orin_console.core.file_facts.FileFactsCache` (its headers are read through
the manager's prediction cache, so a file read for a prediction is not read again here), shared
by ``GET /models/list``, ``GET /models/{id}`` and the ``Snapshot`` of ``GET /events``: each
header is read once per file identity, never on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orin_console.core.file_facts import FileFacts, FileFactsCache
from orin_console.core.text import sanitize

if TYPE_CHECKING:
    from orin_console.core import Core
    from orin_console.core.catalog.store import Catalog, CatalogEntry

__all__ = ["catalog_facts", "entry_facts", "facts_cache", "facts_to_dict"]

def facts_cache(core: Core) -> FileFactsCache:
    """The core's facts cache (the manager's: shared with an in-process console)."""
    return core.manager.file_facts


def facts_to_dict(facts: FileFacts) -> dict[str, Any]:
    """``{"file_size", "quantization", "architecture", "n_params", "context_length", "name",
    "problem"}``; every text sanitised (again: the cache's are already)."""
    def text(value: str | None) -> str | None:
        return sanitize(value) if value else None

    return {"file_size": facts.file_size, "quantization": text(facts.quantization),
            "architecture": text(facts.architecture), "n_params": facts.n_params,
            "context_length": facts.context_length, "name": text(facts.name), "problem": text(facts.problem)}


def entry_facts(core: Core, entry: CatalogEntry) -> dict[str, Any]:
    """One catalog entry's facts as JSON."""
    return facts_to_dict(facts_cache(core).for_entry(core.manager.catalog, entry))


def catalog_facts(core: Core, catalog: Catalog | None = None) -> dict[str, dict[str, Any]]:
    """Every entry's facts as JSON, by id, of ``catalog`` (default: the core's catalog now)."""
    chosen = catalog if catalog is not None else core.manager.catalog
    return {mid: facts_to_dict(f) for mid, f in facts_cache(core).for_catalog(chosen).items()}
