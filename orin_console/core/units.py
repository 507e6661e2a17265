"""Byte units and the one byte formatter every front end uses."""

from __future__ import annotations

from typing import Final

MB: Final = 1024**2
GB: Final = 1024**3


def format_size(n: int | float, unit: str | None = None) -> str:
    """Return bytes as text with one decimal: ``"1.4 GB"``, ``"45.0 MB"``.

    Args:
        n: bytes (may be negative).
        unit: ``"GB"`` or ``"MB"`` to force a unit; by default GB from 1 GB up, else MB.
    """
    if unit is None:
        unit = "GB" if abs(n) >= GB else "MB"
    scale = GB if unit == "GB" else MB
    return f"{n / scale:.1f} {unit}"
