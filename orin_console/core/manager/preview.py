"""What adding a path to the catalog would do, without writing anything.

:func:`preview_add` validates the GGUF files at a path with the bounded reader, proposes their
catalog entries (the defaults ``add_models`` would use), predicts each one's memory and asks
admission whether it would fit in each loaded tier now. The console's add dialog, the API's
``POST /models/add`` with ``dry_run`` and the SDK's ``models.add(path, dry_run=True)`` all show
this one verdict. ``Manager.preview_add`` is the usual entry point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orin_console.core.catalog.add import Refusal, propose_entries
from orin_console.core.catalog.store import CatalogEntry
from orin_console.core.errors import OrinError
from orin_console.core.gguf import GGUFInfo
from orin_console.core.manager.model import default_tier
from orin_console.core.memory.admission import AdmissionRequest, Decision
from orin_console.core.memory.prediction import Prediction
from orin_console.core.tier import LOADED_TIERS, Tier

if TYPE_CHECKING:
    from orin_console.core.manager.manager import Manager

__all__ = ["FileVerdict", "Verdict", "preview_add"]


@dataclass(frozen=True)
class FileVerdict:
    """One file that would be added: its proposed entry, header, prediction and admission.

    Attributes:
        file: the file.
        entry: the catalog entry ``add_models`` would write for it.
        info: its validated header facts.
        prediction: its predicted memory in ``entry``'s default tier.
        decision: admission's verdict for a load into that tier now.
        problem: why the prediction failed, when it did.
        decisions: admission's verdict for each loaded tier (``ram``, ``swap``) now.
    """

    file: Path
    entry: CatalogEntry
    info: GGUFInfo
    prediction: Prediction | None
    decision: Decision | None
    problem: str | None = None
    decisions: Mapping[str, Decision] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What adding ``path`` would do: files accepted, files refused (with the reader's reason),
    or ``error`` when the request itself is refused (no such path, an id already taken...)."""

    path: Path
    accepted: tuple[FileVerdict, ...]
    refused: tuple[Refusal, ...]
    error: str | None = None

    @property
    def addable(self) -> bool:
        """Whether at least one file would be added."""
        return bool(self.accepted)


def preview_add(manager: Manager, path: Path, **options: Any) -> Verdict:
    """Validate the GGUF files at ``path`` and predict their memory, writing nothing.

    Blocking (reads headers): run it off a UI loop. Options are those of ``add_models``
    (``model_id``, ``tasks``, ``tier``, ``context``).
    """
    catalog = manager.catalog
    try:
        entries, refused = propose_entries(catalog, path, **options)
    except OrinError as exc:
        return Verdict(path, (), (), str(exc))
    accepted = []
    for entry in entries:
        file = catalog.model_path(entry)
        try:
            info = manager.predictions.header(file)
            tier = default_tier(entry)
            decisions: dict[str, Decision] = {}
            prediction: Prediction | None = None
            for each in LOADED_TIERS:
                predicted = manager.predictions.predict(entry, file, Tier(each))
                decisions[str(each)] = manager.scheduler.plan(AdmissionRequest(entry.id, predicted, str(each)))
                if each == tier:
                    prediction = predicted
            accepted.append(FileVerdict(file, entry, info, prediction, decisions.get(str(tier)),
                                        decisions=decisions))
        except OrinError as exc:
            refused.append(Refusal(file, str(exc)))
    return Verdict(path, tuple(accepted), tuple(refused))
