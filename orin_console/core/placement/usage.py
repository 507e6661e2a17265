"""Usage per model: decayed request counts, last use, tokens, TTFT and speed.

Selection (a resident, fast, recently used model wins ties) and the placement plan (which
models belong in which tier) read these figures. Counts decay exponentially with a half-life
(default one hour), so yesterday's burst does not outweigh this minute's traffic. The tracker
persists to a small JSON file (atomically) so usage survives a restart; a corrupt file is
ignored with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from orin_console.core.errors import OrinError
from orin_console.core.files import STATE_FILE_LIMIT, atomic_write_text, read_text_file

log = logging.getLogger(__name__)

EMA_WEIGHT = 0.3
"""Weight of the newest figure in the TTFT and tokens/s moving averages."""


@dataclass(frozen=True)
class UsageRecord:
    """One model's usage at a moment.

    Attributes:
        count: requests, exponentially decayed to ``at``.
        last_used: wall-clock time of the last request (0: never).
        requests: requests ever (not decayed).
        tokens: tokens generated ever.
        ttft_s: moving average of time to first token, or None before the first request.
        tok_per_s: moving average of decode speed, or None before it was measured.
        at: the wall-clock time ``count`` was decayed to.
    """

    count: float = 0.0
    last_used: float = 0.0
    requests: int = 0
    tokens: int = 0
    ttft_s: float | None = None
    tok_per_s: float | None = None
    at: float = 0.0


def _ema(old: float | None, new: float | None) -> float | None:
    if new is None or not math.isfinite(new):
        return old
    return new if old is None else old + EMA_WEIGHT * (new - old)


class UsageTracker:
    """Thread-safe usage records, decayed on read.

    Args:
        half_life_s: seconds after which a request counts half.
        path: the JSON file to persist to (None: memory only).
        clock: wall-clock source (tests pass a fake).
    """

    def __init__(self, half_life_s: float = 3600.0, path: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, UsageRecord] = {}
        if path is not None:
            self._load(path)

    def _decayed(self, rec: UsageRecord, now: float) -> UsageRecord:
        if rec.at >= now:
            return rec
        factor = 0.5 ** ((now - rec.at) / self.half_life_s)
        return replace(rec, count=rec.count * factor, at=now)

    def record(self, model_id: str, *, tokens: int = 0, ttft_s: float | None = None,
               tok_per_s: float | None = None) -> UsageRecord:
        """Count one request for ``model_id`` with what it measured."""
        now = self._clock()
        with self._lock:
            rec = self._decayed(self._records.get(model_id, UsageRecord(at=now)), now)
            rec = replace(
                rec,
                count=rec.count + 1.0,
                last_used=now,
                requests=rec.requests + 1,
                tokens=rec.tokens + max(0, tokens),
                ttft_s=_ema(rec.ttft_s, ttft_s),
                tok_per_s=_ema(rec.tok_per_s, tok_per_s),
            )
            self._records[model_id] = rec
            return rec

    def get(self, model_id: str) -> UsageRecord:
        """The model's record decayed to now (an empty record when never used)."""
        now = self._clock()
        with self._lock:
            rec = self._records.get(model_id)
            return self._decayed(rec, now) if rec else UsageRecord(at=now)

    def snapshot(self) -> dict[str, UsageRecord]:
        """Every model's record, decayed to now."""
        now = self._clock()
        with self._lock:
            return {mid: self._decayed(rec, now) for mid, rec in self._records.items()}

    def forget(self, model_id: str) -> None:
        """Drop a model's record (it left the catalog)."""
        with self._lock:
            self._records.pop(model_id, None)

    def save(self) -> None:
        """Write the records to :attr:`path` atomically (no-op without a path)."""
        if self.path is None:
            return
        data = {"version": 1, "half_life_s": self.half_life_s,
                "models": {mid: asdict(rec) for mid, rec in self.snapshot().items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(read_text_file(path, limit_bytes=STATE_FILE_LIMIT, what="usage file"))
            models = data["models"]
            records = {str(mid): UsageRecord(**rec) for mid, rec in models.items()}
        except FileNotFoundError:
            return
        except (OrinError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring the usage file %s (%s); usage starts afresh", path, exc)
            return
        self._records = records
