"""The catalog watcher: a thread that notices edits of ``models.toml`` and applies them.

A bad edit is refused (the last good catalog stays in force) and reported; applying a good one
may fail without ending the watcher. :meth:`CatalogWatcher.stop` joins the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from orin_console.core.catalog.store import Catalog, CatalogStore
from orin_console.core.errors import CatalogError

__all__ = ["CatalogWatcher"]

log = logging.getLogger(__name__)


class CatalogWatcher:
    """Check the catalog file every ``interval_s`` seconds and hand each change on.

    Args:
        store: the catalog store.
        interval_s: seconds between checks (0: never start).
        on_change: called with the new catalog (on the watcher's thread).
        on_error: called with an operator-worded message when an edit is refused or fails.
    """

    def __init__(self, store: CatalogStore, interval_s: float, *, on_change: Callable[[Catalog], None],
                 on_error: Callable[[str], None]) -> None:
        self._store = store
        self._interval_s = interval_s
        self._on_change = on_change
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once; nothing when the interval is 0)."""
        if self._interval_s > 0 and self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="orin-catalog-watch", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join the thread (an edit being applied finishes first, up to ``timeout``)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()

    def check(self) -> None:
        """Look at the file once and apply a change (also used by tests)."""
        try:
            catalog = self._store.reload_if_changed()
        except CatalogError as exc:
            self._on_error(f"catalog edit refused: {exc}")
            return
        except OSError as exc:  # pragma: no cover - a vanished folder, say
            self._on_error(f"cannot read the catalog: {exc}")
            return
        if catalog is None or self._stop.is_set():
            return
        try:
            self._on_change(catalog)
        except Exception as exc:
            log.exception("applying the catalog edit failed")
            self._on_error(f"applying the catalog edit failed: {exc}")
