"""Connect pacing: one token bucket per worker, so that its clients dial Telegram at most so many per second.

A start-all, the resume of a restarted or fenced worker, and the reconnects after a network blip would
otherwise have every client dial at the same moment. Each connect takes a token first: up to `burst` go at
once, then `rate` per second; a caller whose token is not there yet gets its place in line and waits for it
(`reserve` says how long), so waiting costs nothing but the wait. The bucket is shared by the clients of all
the worker's event-loop threads.

A place in line is a time to dial, and a loop thread starved of CPU wakes its waiters late, all at once: the
dials themselves go through a second bucket of the same size and rate (`take_dial`), so whatever the host's
load, no window of dials holds more than the burst plus the rate over the window. On a machine with CPU to
spare, the second bucket never makes anyone wait.
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
        self._tokens = float(self.burst)  # places in line
        self._updated = clock()
        self._dials = float(self.burst)  # the dials themselves
        self._dialled = self._updated

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

    def take_dial(self, ahead_of_line: bool = False) -> float:
        """Take a dial token; 0 when one was there, else the seconds until there will be one (nothing taken).
        `ahead_of_line` takes it whatever the bucket holds (the others then wait for it)."""
        with self._lock:
            now = self._clock()
            self._dials = min(float(self.burst), self._dials + (now - self._dialled) * self.rate)
            self._dialled = now
            if self._dials >= 1.0 - 1e-9 or ahead_of_line:
                self._dials -= 1.0
                return 0.0
            return (1.0 - self._dials) / self.rate

    def take_turn_now(self) -> None:
        """A turn ahead of the line (an admin waits on a login): it still counts in the pace of the others."""
        self.reserve()
        self.take_dial(ahead_of_line=True)

    async def wait_turn(
        self, stop: asyncio.Event | None = None, on_wait: Callable[[float], object] | None = None
    ) -> bool:
        """Wait for this caller's turn to connect; False if `stop` was set meanwhile. `on_wait` is told how long
        the wait will be (only when there is one). A turn not used (stopped, or cancelled) is returned."""
        delay = self.reserve()
        if delay > 0 and on_wait is not None:
            on_wait(delay)
        try:
            while delay > 0 or (delay := self.take_dial()) > 0:
                if await self._stopped_within(stop, delay):
                    self.give_back()
                    return False
                delay = 0.0
        except asyncio.CancelledError:
            self.give_back()
            raise
        return True

    @staticmethod
    async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
        if stop is None:
            await asyncio.sleep(seconds)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        return stop.is_set()


def jittered(seconds: float, spread: float = 0.25) -> float:
    """`seconds` give or take `spread` of it, at random: retries that failed together do not retry together."""
    return seconds * random.uniform(1.0 - spread, 1.0 + spread)
