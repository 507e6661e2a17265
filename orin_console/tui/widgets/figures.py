"""Compact figures for the console's narrow panes: ``3.1G``, ``279M``, ``3.1/5.0G``.

The CLI and the API write sizes with :func:`orin_console.core.units.format_size`
(``"3.1 GB"``); at 80 columns the tier map, the gauge line and the catalog cannot spare the
space and the unit's second letter, so they use these. The numbers are the same (1024-based,
one decimal); only the spelling is shorter.
"""

from __future__ import annotations

from orin_console.core.units import GB, KB, MB

__all__ = ["short_size", "size_pair"]


def short_size(n: int | float | None) -> str:
    """Bytes as ``"3.1G"`` (from 1 GB), ``"279M"`` (from 1 MB) or ``"12K"``; ``"—"`` for None.

    Args:
        n: bytes, or None when unknown.
    """
    if n is None:
        return "—"
    if abs(n) >= GB:
        return f"{n / GB:.1f}G"
    if abs(n) >= MB:
        return f"{n / MB:.0f}M"
    return f"{n / KB:.0f}K"


def size_pair(used: int | float, total: int | float) -> str:
    """``used/total`` in the total's unit, the unit written once: ``"3.1/5.0G"``, ``"279/512M"``.

    Args:
        used: bytes in use.
        total: bytes in all.
    """
    if abs(total) >= GB:
        return f"{used / GB:.1f}/{total / GB:.1f}G"
    if abs(total) >= MB:
        return f"{used / MB:.0f}/{total / MB:.0f}M"
    return f"{short_size(used)}/{short_size(total)}"
