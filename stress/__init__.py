"""Chaos and soak checks with figures (issue 11).

Each module (``faults``, ``budget``, ``disconnects``, ``durability``, ``telemetry_faults``,
``soak``) exposes ``run(quick: bool, seed: int, **opts) -> dict``: its figures, JSON-able, with
a ``"goal_met"`` flag. Each runs alone with ``python -m stress.<module> [--quick] [--seed N]``;
``python -m stress [names...]`` runs them all (or the ones named) and prints one final JSON line.
Shared helpers (tiny models, a live server on loopback, process counts) are in
:mod:`stress.common`. See ``docs/reliability.md``.
"""
