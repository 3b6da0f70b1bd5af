"""Short garbage-collector pauses with thousands of clients: what survives a full collection is frozen.

CPython's full (generation 2) collection walks every tracked object while it holds the GIL. A worker with
10,000 Telethon clients tracks about three million: each full collection stopped every event loop, the
heartbeat and Celery for 1-4 s (bench/real_scale.py measured it), and while the clients started one came
every few seconds, ever longer as the heap grew. So after each full collection the objects that survived it
are frozen (`gc.freeze`): later collections walk only what was made since, in milliseconds.

A frozen object is still freed as soon as nothing refers to it; only cyclic garbage among frozen objects
waits (a client that stopped leaves some: Telethon's objects refer to each other). Once as many client runs
have ended since the last thaw as there are running clients (and at least THAW_AFTER_RUNS), everything is
thawed and the next full collection walks it all once and frees that garbage. Installed once per process
(`install`); `run_ended` counts the runs.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

THAW_AFTER_RUNS = 1000
SLOW_COLLECTION = 0.5  # seconds: a full collection this long is logged


class Collector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._installed = False
        self._ended = 0  # client runs ended since the last thaw
        self._started_at = 0.0
        self.full_collections = 0
        self.longest_pause = 0.0

    def install(self) -> None:
        """Freeze after every full collection from now on (idempotent)."""
        with self._lock:
            if self._installed:
                return
            self._installed = True
        gc.callbacks.append(self._on_collection)

    def run_ended(self, running: int) -> None:
        """A client's run ended (`running` are left): thaw once enough runs ended to have left much garbage."""
        with self._lock:
            self._ended += 1
            if self._ended < max(THAW_AFTER_RUNS, running):
                return
            self._ended = 0
        gc.unfreeze()  # the next full collection walks everything once, and frees the garbage of ended runs

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        pause = time.perf_counter() - self._started_at
        self.full_collections += 1
        self.longest_pause = max(self.longest_pause, pause)
        if pause > SLOW_COLLECTION:
            log.info("a full garbage collection took %.1f s (%d objects frozen)", pause, gc.get_freeze_count())
        gc.freeze()  # whatever survived it is long-lived: later collections skip it


COLLECTOR = Collector()
