"""Measured runner footprints, kept between runs to correct later predictions.

After a runner has loaded (and, ideally, after it has served a full-context prompt) the
manager records what the OS says it occupies: RSS, USS, swap and GPU memory. The figures
live in one small JSON file (``<state_dir>/measurements.json``), written atomically, keyed
by model identity, context and tier. :func:`~orin_console.core.memory.prediction.predict` asks
:meth:`Corrections.correction_for` and adjusts its estimate:

- a measurement of the same model, context and tier: ``estimate + (measured - predicted)``,
  where ``predicted`` is the estimate of the same state (the peak, or right after the load);
  for a peak measurement that is exactly the measured figure;
- a measurement of the same model and tier at another context: ``estimate x ratio``, the
  nearest context's ``measured / predicted``, bounded to ``[0.5, 3.0]``.

A corrupt or unreadable file is ignored with a warning (logged, and kept in
:attr:`Corrections.problem` for the UI) and set aside as ``measurements.json.bad`` on the
next write; a bad entry is skipped on its own. Nothing here ever raises on bad data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from orin_console.core.errors import OrinError
from orin_console.core.files import STATE_FILE_LIMIT, atomic_write_text, read_text_file
from orin_console.core.tier import LOADED_TIERS

if TYPE_CHECKING:
    from orin_console.core.memory.prediction import Prediction

__all__ = ["Correction", "Corrections", "Measurement", "model_identity"]

log = logging.getLogger(__name__)

FILE_NAME = "measurements.json"
SCHEMA = 1
RATIO_BOUNDS = (0.5, 3.0)
"""A measured/predicted ratio outside this is bounded: one odd record must not make a
model unloadable nor let it in unchecked."""
MAX_ENTRIES = 1000
STATES = ("peak", "load")


def model_identity(path: str | os.PathLike[str], sha256: str | None = None) -> str:
    """A stable key for a model file.

    Args:
        path: the file.
        sha256: its checksum when known (the catalog's optional ``sha256``): then the key
            survives the file being moved or touched.

    Returns:
        ``"sha256:<hex>"``, or ``"file:<real path>:<size>:<mtime_ns>"`` (just the path when
        the file cannot be read), so a replaced file never inherits old figures.
    """
    if sha256:
        return f"sha256:{sha256.lower()}"
    real = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(real)
    except OSError:
        return f"file:{real}"
    return f"file:{real}:{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class Measurement:
    """One measured runner.

    Attributes:
        identity: the model's key (:func:`model_identity`).
        n_ctx: the allocated context (rounded up to 256, as in :class:`Prediction`).
        tier: ``"ram"`` or ``"swap"``.
        state: ``"peak"`` (after a full-context prompt) or ``"load"`` (right after loading).
        measured: bytes it occupied: RSS + swap + GPU memory.
        predicted: the estimate of the same state when it was measured.
        rss: resident set size.
        uss: unique set size (None when unknown).
        swap: swapped-out bytes (None when unknown).
        gpu: GPU memory attributed to it (None when unknown).
        at: when (seconds since the epoch).
    """

    identity: str
    n_ctx: int
    tier: str
    state: str
    measured: int
    predicted: int
    rss: int
    uss: int | None
    swap: int | None
    gpu: int | None
    at: float

    @property
    def ratio(self) -> float:
        """``measured / predicted``."""
        return self.measured / self.predicted

    @property
    def error(self) -> float:
        """Prediction error as a fraction of the measured figure (positive: over-predicted)."""
        return (self.predicted - self.measured) / self.measured

    @classmethod
    def from_json(cls, raw: Any) -> Measurement:
        """Rebuild from the file; raises ValueError on anything malformed."""
        if not isinstance(raw, dict):
            raise ValueError("an entry is not an object")
        ints = ("n_ctx", "measured", "predicted", "rss")
        opt = ("uss", "swap", "gpu")
        for name in ints:
            if not _is_count(raw.get(name)) or raw[name] <= 0:
                raise ValueError(f"{name} must be a positive integer")
        for name in opt:
            if raw.get(name) is not None and not _is_count(raw[name]):
                raise ValueError(f"{name} must be a non-negative integer or null")
        if not isinstance(raw.get("identity"), str) or not raw["identity"]:
            raise ValueError("identity must be a non-empty string")
        if raw.get("tier") not in LOADED_TIERS or raw.get("state") not in STATES:
            raise ValueError("tier must be ram or swap, state peak or load")
        at = raw.get("at")
        if not isinstance(at, (int, float)) or isinstance(at, bool) or not math.isfinite(at):
            raise ValueError("at must be a number")
        return cls(
            identity=raw["identity"], n_ctx=raw["n_ctx"], tier=raw["tier"], state=raw["state"],
            measured=raw["measured"], predicted=raw["predicted"], rss=raw["rss"],
            uss=raw.get("uss"), swap=raw.get("swap"), gpu=raw.get("gpu"), at=float(at),
        )


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Correction:
    """What the measurements say a prediction should be.

    Attributes:
        total: corrected bytes.
        basis: ``"measured"`` (a peak of the same model, context and tier) or ``"scaled"``.
        source: the measurement used.
    """

    total: int
    basis: str
    source: Measurement


class Corrections:
    """The persisted measurements (thread-safe; one instance per state folder).

    Args:
        path: the JSON file; it is read now and written on every record.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int, str], Measurement] = {}
        self._baseline: int | None = None
        self._load()

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike[str]) -> Corrections:
        """The measurements file of a state folder (``Settings.state_dir``)."""
        return cls(Path(state_dir) / FILE_NAME)

    # ---- reading -------------------------------------------------------------------

    def _warn(self, text: str) -> None:
        self.problem = f"{self.path}: {text}; stored measurements ignored"
        log.warning("%s", self.problem)

    def _load(self) -> None:
        try:
            text = read_text_file(self.path, limit_bytes=STATE_FILE_LIMIT, what="measurements file")
        except FileNotFoundError:
            return
        except OrinError as exc:  # not a regular file, too large, not UTF-8: it names itself
            self.problem = f"{exc}; stored measurements ignored"
            log.warning("%s", self.problem)
            return
        try:
            data = json.loads(text)
        except ValueError as exc:
            self._warn(f"not valid JSON ({exc})")
            return
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            self._warn(f"not a schema-{SCHEMA} measurements file")
            return
        baseline = data.get("runner_baseline")
        if _is_count(baseline) and baseline > 0:
            self._baseline = baseline
        raw_entries = data.get("measurements")
        if not isinstance(raw_entries, list):
            self._warn("'measurements' is not a list")
            return
        bad = 0
        for raw in raw_entries:
            try:
                m = Measurement.from_json(raw)
            except ValueError:
                bad += 1
                continue
            self._entries[(m.identity, m.n_ctx, m.tier)] = m
        if bad:
            self.problem = f"{self.path}: {bad} malformed entries skipped"
            log.warning("%s", self.problem)

    def measurements(self) -> list[Measurement]:
        """Every stored measurement, oldest first."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda m: m.at)

    def lookup(self, identity: str, n_ctx: int, tier: str) -> Measurement | None:
        """The measurement of exactly this model, context and tier, if any."""
        with self._lock:
            return self._entries.get((identity, n_ctx, tier))

    def runner_baseline(self) -> int | None:
        """The measured RSS of an idle runner (no model), if recorded."""
        return self._baseline

    def correction_for(
        self, identity: str, n_ctx: int, tier: str, *, estimate: int, at_load: int
    ) -> Correction | None:
        """Correct an estimate from what was measured for this model and tier.

        Args:
            identity: the model's key.
            n_ctx: the allocated context.
            tier: ``"ram"`` or ``"swap"``.
            estimate: the model's estimate of the peak.
            at_load: its estimate of the footprint right after the load.

        Returns:
            The corrected figure, or None when this model was never measured in this tier.
        """
        with self._lock:
            exact = self._entries.get((identity, n_ctx, tier))
            others = [m for (i, _c, t), m in self._entries.items() if i == identity and t == tier]
        if exact is not None:
            same_state = estimate if exact.state == "peak" else at_load
            total = max(1, estimate + exact.measured - same_state)
            return Correction(total, "measured" if exact.state == "peak" else "scaled", exact)
        if not others:
            return None
        nearest = min(others, key=lambda m: (abs(m.n_ctx - n_ctx), -m.at))
        ratio = min(max(nearest.ratio, RATIO_BOUNDS[0]), RATIO_BOUNDS[1])
        return Correction(max(1, round(estimate * ratio)), "scaled", nearest)

    # ---- writing -------------------------------------------------------------------

    def record(
        self,
        identity: str,
        prediction: Prediction,
        *,
        rss: int,
        uss: int | None = None,
        swap: int | None = None,
        gpu: int | None = None,
        state: str = "load",
        at: float | None = None,
    ) -> Measurement:
        """Store a runner's measured footprint next to what was predicted for it.

        Args:
            identity: the model's key (:func:`model_identity`).
            prediction: what :func:`~orin_console.core.memory.prediction.predict` said for this runner
                (its ``n_ctx`` and ``tier`` key the entry).
            rss: resident set size in bytes.
            uss: unique set size.
            swap: swapped-out bytes.
            gpu: GPU memory attributed to the runner.
            state: ``"load"`` when measured right after the load; ``"peak"`` only after the
                runner has processed a prompt that filled its context.
            at: time of the measurement (default: now).

        Returns:
            The stored measurement (the previous one for the same key is replaced).

        Raises:
            ValueError: a non-positive RSS or an unknown state.
        """
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        if rss <= 0:
            raise ValueError("rss must be positive")
        predicted = prediction.estimate if state == "peak" else prediction.at_load
        m = Measurement(
            identity=identity, n_ctx=prediction.n_ctx, tier=prediction.tier, state=state,
            measured=rss + (swap or 0) + (gpu or 0), predicted=max(1, predicted),
            rss=rss, uss=uss, swap=swap, gpu=gpu, at=time.time() if at is None else at,
        )
        with self._lock:
            self._entries[(m.identity, m.n_ctx, m.tier)] = m
            self._save()
        return m

    def record_runner_baseline(self, rss: int) -> None:
        """Store the RSS of an idle runner (Python + llama_cpp, no model)."""
        if rss <= 0:
            raise ValueError("rss must be positive")
        with self._lock:
            self._baseline = rss
            self._save()

    def _save(self) -> None:
        if len(self._entries) > MAX_ENTRIES:
            keep = sorted(self._entries.items(), key=lambda kv: kv[1].at)[-MAX_ENTRIES:]
            self._entries = dict(keep)
        payload: Mapping[str, Any] = {
            "schema": SCHEMA,
            "runner_baseline": self._baseline,
            "measurements": [asdict(m) for m in sorted(self._entries.values(), key=lambda m: m.at)],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.problem is not None and self.path.exists():
            os.replace(self.path, self.path.with_name(self.path.name + ".bad"))
            self.problem = None
        atomic_write_text(self.path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
