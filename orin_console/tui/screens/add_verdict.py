"""What the add dialog shows about a path: each file's header facts, its proposed entry, its
predicted memory and admission's verdict, or why it was refused.

The dialog's own view of a verdict, made by either back end: :func:`check_path` from the core's
:func:`~orin_console.core.manager.preview.preview_add` (in process), :func:`verdict_from_json`
from ``POST /models/add`` with ``dry_run`` (attached). :func:`describe` turns it into text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text

from orin_console.core.catalog.add import Refusal
from orin_console.core.catalog.store import TASKS, CatalogEntry
from orin_console.core.errors import OrinError
from orin_console.core.memory.admission import Decision
from orin_console.core.text import sanitize, sanitize_path
from orin_console.core.tier import Tier
from orin_console.core.units import format_size

__all__ = ["FileVerdict", "HeaderFacts", "PredictedMemory", "Verdict", "check_path", "describe",
           "verdict_from_json"]

MAX_LISTED = 20
"""Files of a folder shown one by one in the verdict (the rest are counted)."""


@dataclass(frozen=True)
class HeaderFacts:
    """What the GGUF header says, as the dialog shows it."""

    version: int
    architecture: str
    quantization: str
    n_params: int
    file_size: int
    chat_template: bool


@dataclass(frozen=True)
class PredictedMemory:
    """The predicted memory in one tier: its total and the itemised text."""

    total: int
    tier: str
    text: str

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class FileVerdict:
    """One file that would be added: its proposed entry, header, prediction and admission."""

    file: Path
    entry: CatalogEntry
    info: HeaderFacts
    prediction: PredictedMemory | None
    decision: Decision | None
    problem: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What adding ``path`` would do: files accepted, files refused (with the reader's reason)."""

    path: Path
    accepted: tuple[FileVerdict, ...]
    refused: tuple[Refusal, ...]
    error: str | None = None

    @property
    def addable(self) -> bool:
        """Whether at least one file would be added."""
        return bool(self.accepted)


def check_path(manager: Any, path: Path) -> Verdict:
    """Validate the GGUF files at ``path`` and predict their memory, writing nothing (the core's
    ``manager.preview_add``). Blocking (reads headers): run it in a worker."""
    try:
        core_verdict = manager.preview_add(path)
    except OrinError as exc:
        return Verdict(path, (), (), str(exc))
    accepted = []
    for item in core_verdict.accepted:
        info, pred = item.info, item.prediction
        facts = HeaderFacts(info.version, info.architecture, info.quantization, info.n_params, info.file_size,
                            info.chat_template is not None)
        memory = None if pred is None else PredictedMemory(pred.total, pred.tier, pred.describe())
        accepted.append(FileVerdict(item.file, item.entry, facts, memory, item.decision, item.problem))
    return Verdict(core_verdict.path, tuple(accepted), tuple(core_verdict.refused), core_verdict.error)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def verdict_from_json(data: Mapping[str, Any], path: Path) -> Verdict:
    """The dialog's verdict from an ``AddPreview`` (``POST /models/add`` with ``dry_run``)."""
    from orin_console.tui.backend.convert import decision

    accepted = []
    for e in data.get("entries") or ():
        if not isinstance(e, Mapping):
            continue
        header = _map(e.get("header"))
        tasks: Any = tuple(t for t in e.get("tasks") or () if t in TASKS) or ("chat",)  # Task literals
        try:
            entry = CatalogEntry(id=str(e.get("id")), path=str(e.get("path") or "?"), tasks=tasks,
                                 tier=Tier(str(e.get("tier")) if e.get("tier") in ("ram", "swap", "disk") else "swap"),
                                 context=_int(e.get("context")) or 2048)
        except ValueError:
            continue
        facts = HeaderFacts(_int(header.get("version")), str(header.get("architecture") or "?"),
                            str(header.get("quantization") or "?"), _int(header.get("n_params")),
                            _int(header.get("file_size")), header.get("chat_template") is True)
        pred = e.get("prediction")
        memory = None if not isinstance(pred, Mapping) else PredictedMemory(
            _int(pred.get("total_bytes")), str(pred.get("tier") or ""), str(pred.get("text") or ""))
        admission = _map(e.get("admission"))
        load_tier = str(e.get("load_tier") or entry.tier.value)
        verdict = admission.get(load_tier)
        accepted.append(FileVerdict(Path(str(e.get("file") or e.get("path") or "?")), entry, facts, memory,
                                    decision(verdict) if isinstance(verdict, Mapping) else None,
                                    str(e["problem"]) if isinstance(e.get("problem"), str) else None))
    refused = tuple(Refusal(Path(str(r.get("path") or "?")), str(r.get("reason") or ""))
                    for r in data.get("refused") or () if isinstance(r, Mapping))
    return Verdict(path, tuple(accepted), refused)


def describe(verdict: Verdict) -> Text:
    """The verdict as plain text lines (every outside string sanitised; no markup)."""
    text = Text()
    if verdict.error:
        text.append("✗ " + sanitize(verdict.error), style="bold")
        return text
    for item in verdict.accepted[:MAX_LISTED]:
        info, entry, pred = item.info, item.entry, item.prediction
        text.append(f"✓ {sanitize_path(item.file.name)}", style="bold")
        text.append(f": valid GGUF v{info.version}, {sanitize(info.architecture)}, "
                    f"{sanitize(info.quantization)}, {info.n_params / 1e6:.1f} M params, "
                    f"{format_size(info.file_size)}"
                    f"{', chat template' if info.chat_template else ''}\n")
        text.append(f"  as `{sanitize(entry.id)}`: {', '.join(entry.tasks)}, tier {entry.tier.value}, "
                    f"context {entry.context}\n")
        if pred is not None:
            text.append(f"  predicted {format_size(pred.total)} in {pred.tier}: {sanitize(pred.describe())}\n")
        if item.decision is not None:
            verdict_line = "would fit now" if item.decision.ok else sanitize(item.decision.explain())
            text.append(f"  admission: {verdict_line}\n")
    if len(verdict.accepted) > MAX_LISTED:
        text.append(f"… and {len(verdict.accepted) - MAX_LISTED} more valid files\n")
    for refusal in verdict.refused[:MAX_LISTED]:
        text.append(f"✗ {sanitize_path(refusal.path.name)}", style="bold")
        text.append(f": {sanitize(refusal.reason)}\n")
    if len(verdict.refused) > MAX_LISTED:
        text.append(f"… and {len(verdict.refused) - MAX_LISTED} more refused files\n")
    if not verdict.accepted and not verdict.refused:
        text.append("nothing to add\n")
    text.rstrip()
    return text
