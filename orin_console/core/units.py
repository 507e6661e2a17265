"""Byte units and the one byte formatter every front end uses."""

from __future__ import annotations

from typing import Final

KB: Final = 1024
MB: Final = 1024**2
GB: Final = 1024**3
_SCALES: Final = {"KB": KB, "MB": MB, "GB": GB}


def format_size(n: int | float, unit: str | None = None) -> str:
    """Return bytes as text with one decimal: ``"1.4 GB"``, ``"45.0 MB"``.

    Args:
        n: bytes (may be negative).
        unit: ``"GB"``, ``"MB"`` or ``"KB"`` to force a unit; by default GB from 1 GB up,
            else MB.

    Raises:
        ValueError: an unknown unit.
    """
    if unit is None:
        unit = "GB" if abs(n) >= GB else "MB"
    try:
        scale = _SCALES[unit]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r} (use GB, MB or KB)") from None
    return f"{n / scale:.1f} {unit}"
