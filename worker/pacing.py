"""Connect pacing: one token bucket per worker, so that its clients dial Telegram at most so many per second.

A start-all, the resume of a restarted or fenced worker, and the reconnects after a network blip would
otherwise have every client dial at the same moment. Each connect takes a token first: up to `burst` go at
once, then `rate` per second; a caller whose token is not there yet gets its place in line and waits for it
(`reserve` says how long), so waiting costs nothing but the wait. The bucket is shared by the clients of all
the worker's event-loop threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from collections.abc import Callable

DEFAULT_CONNECTS_PER_SECOND = 20.0


class ConnectPacer:
    """A thread-safe token bucket with reservations (tokens may go negative: the debt is the queue)."""

    def __init__(self, rate: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("the connect rate must be a positive number")
        self.rate = float(rate)
        self.burst = max(1, burst if burst is not None else math.ceil(rate))
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._updated = clock()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it (0 when one was there)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self) -> None:
        """Return a reserved token that will not be used (its holder was stopped while waiting)."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + 1.0)

    async def wait_turn(
        self, stop: asyncio.Event | None = None, on_wait: Callable[[float], object] | None = None
    ) -> bool:
        """Wait for this caller's turn to connect; False if `stop` was set meanwhile. `on_wait` is told how long
        the wait will be (only when there is one). A turn not used (stopped, or cancelled) is returned."""
        delay = self.reserve()
        if delay <= 0:
            return True
        if on_wait is not None:
            on_wait(delay)
        try:
            if stop is None:
                await asyncio.sleep(delay)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.CancelledError:
            self.give_back()
            raise
        if stop.is_set():
            self.give_back()
            return False
        return True


def jittered(seconds: float, spread: float = 0.25) -> float:
    """`seconds` give or take `spread` of it, at random: retries that failed together do not retry together."""
    return seconds * random.uniform(1.0 - spread, 1.0 + spread)
