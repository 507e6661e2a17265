"""The tiers, defined once (DESIGN.md, "Tiers").

``ram``: resident, GPU-backed, locked. ``swap``: loaded, CPU-only, pageable. ``disk``: in the
catalog, not loaded. :class:`Tier` is a ``StrEnum``, so a member equals its name as text and
serialises as it (``Tier.RAM == "ram"``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from orin_console.core.errors import OrinError


class Tier(StrEnum):
    """Where a model is (or is asked to be)."""

    RAM = "ram"
    """Resident and GPU-backed (all layers offloaded when the build can), weights locked."""
    SWAP = "swap"
    """Loaded, CPU only, pageable."""
    DISK = "disk"
    """In the catalog, not loaded: no runner."""

    @property
    def loaded(self) -> bool:
        """Whether a model in this tier has a runner."""
        return self is not Tier.DISK

    @property
    def label(self) -> str:
        """The tier in an operator's words: "RAM tier", "swap tier", "disk tier"."""
        return TIER_LABELS[self]

    @property
    def other(self) -> Tier:
        """The other loaded tier (``ram`` <-> ``swap``); ``disk`` has none."""
        if self is Tier.DISK:
            raise ValueError("the disk tier has no other loaded tier")
        return Tier.SWAP if self is Tier.RAM else Tier.RAM


LOADED_TIERS: Final[tuple[Tier, Tier]] = (Tier.RAM, Tier.SWAP)
"""The tiers with a runner, fastest first."""

TIER_LABELS: Final[dict[Tier, str]] = {Tier.RAM: "RAM tier", Tier.SWAP: "swap tier", Tier.DISK: "disk tier"}


def parse_tier(value: str | Tier) -> Tier:
    """``value`` as a :class:`Tier`.

    Raises:
        OrinError: not a tier, with the allowed names.
    """
    try:
        return Tier(value)
    except ValueError:
        shown = repr(value)[:40]
        raise OrinError(f"unknown tier {shown} (use ram, swap or disk)") from None
