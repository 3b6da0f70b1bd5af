"""`LoopWatchdog`: notices, from a thread of its own, an event loop that stopped turning, and names the task
that was running (for plugins: the plugin, as their tasks are named `plugin:<name>:<account>`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

BlockCallback = Callable[[str | None, float, bool], None]


class LoopWatchdog:
    """Notices an event loop that stopped turning, from a thread of its own.

    Every `threshold / 4` seconds it asks the loop to run a tiny callback; when one is overdue by more than
    `threshold` the loop is blocked, and `on_block(task_name, seconds, ongoing=True)` is called (from the
    watchdog's thread) with the name of the task running at that moment (`asyncio.current_task(loop)`: a
    dict lookup, safe from another thread in CPython), once per stall. When the loop turns again,
    `on_block(task_name, seconds, ongoing=False)` is called (on the loop) with the stall's whole length.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float, on_block: BlockCallback) -> None:
        self.loop = loop
        self.threshold = threshold
        self.on_block = on_block
        self._lock = threading.Lock()
        self._sent: float | None = None  # monotonic time of the probe in flight
        self._stalled: str | bool | None = False  # False: no stall reported; else the blocking task's name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watchdog", daemon=True)

    def start(self) -> LoopWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(2)

    def _run(self) -> None:
        interval = max(0.01, self.threshold / 4)
        while not self._stop.wait(interval):
            if self.loop.is_closed():
                return
            if not self.loop.is_running():  # stopped (shutting down): not a stall
                with self._lock:
                    self._sent, self._stalled = None, False
                continue
            now = time.monotonic()
            with self._lock:
                sent = self._sent
                if sent is None:
                    self._sent = now
            if sent is None:
                try:
                    self.loop.call_soon_threadsafe(self._turned)
                except RuntimeError:  # the loop was closed
                    return
                continue
            with self._lock:
                report = now - sent > self.threshold and self._stalled is False
                if report:
                    task = asyncio.current_task(self.loop)
                    self._stalled = task.get_name() if task is not None else None
                    name = self._stalled
            if report:
                self._notify(name, now - sent, True)

    def _turned(self) -> None:
        now = time.monotonic()
        with self._lock:
            sent, stalled = self._sent, self._stalled
            self._sent, self._stalled = None, False
        if sent is not None and stalled is not False:
            self._notify(stalled if isinstance(stalled, str) else None, now - sent, False)

    def _notify(self, name: str | None, seconds: float, ongoing: bool) -> None:
        try:
            self.on_block(name, seconds, ongoing)
        except Exception:
            log.exception("the loop watchdog's callback failed")
