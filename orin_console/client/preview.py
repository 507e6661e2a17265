"""``models.add(path, dry_run=True)``'s answer: what adding a file would do (nothing is written)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orin_console.client.types import AddRefusal, PlanVerdict, Record, _dict, _list, _opt_int, _opt_str, _strs

__all__ = ["AddPreview", "ProposedModel"]


@dataclass(frozen=True)
class ProposedModel(Record):
    """A file ``models.add(path, dry_run=True)`` would add.

    Attributes:
        id, path, tasks, tier, context: the catalog entry it would get.
        file: the file's real path on the server.
        load_tier: where a load without a named tier would go.
        header: the GGUF header's facts (``architecture``, ``quantization``, ``n_params``...).
        prediction: ``{"tier", "total_bytes", "text"}`` for ``load_tier``, or None.
        admission: tier (``ram``, ``swap``) -> admission's verdict now.
        fits: tier -> whether a load there would be admitted now.
    """

    id: str
    path: str
    file: str
    tasks: list[str]
    tier: str
    context: int | None
    load_tier: str
    header: dict[str, Any]
    prediction: dict[str, Any] | None
    admission: dict[str, PlanVerdict]
    fits: dict[str, bool]
    problem: str | None = None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> ProposedModel:
        prediction = data.get("prediction")
        return cls(id=str(data.get("id", "")), path=str(data.get("path", "")), file=str(data.get("file", "")),
                   tasks=_strs(data.get("tasks")), tier=str(data.get("tier", "")),
                   context=_opt_int(data.get("context")), load_tier=str(data.get("load_tier", "")),
                   header=_dict(data.get("header")),
                   prediction=dict(prediction) if isinstance(prediction, Mapping) else None,
                   admission={str(k): PlanVerdict.from_dict(v) for k, v in _dict(data.get("admission")).items()
                              if isinstance(v, Mapping)},
                   fits={str(k): bool(v) for k, v in _dict(data.get("fits")).items()},
                   problem=_opt_str(data.get("problem")), raw=data)


@dataclass(frozen=True)
class AddPreview(Record):
    """``models.add(path, dry_run=True)``: what would be added; the catalog was not written."""

    path: str
    addable: bool
    entries: list[ProposedModel]
    refused: list[AddRefusal]

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> AddPreview:
        return cls(path=str(data.get("path", "")), addable=data.get("addable") is True,
                   entries=[ProposedModel.from_dict(e) for e in _list(data.get("entries")) if isinstance(e, Mapping)],
                   refused=[AddRefusal.from_dict(r) for r in _list(data.get("refused")) if isinstance(r, Mapping)],
                   raw=data)
