"""Pacing the board bot's sends to Telegram's limits: about 30 messages a second in all (aiolimiter's leaky
bucket, with a small burst so the rate is smooth), about one a second into any one chat with a small burst
(`ChatPace`), and a 429's `retry_after` honoured for the chat, or for everything when it cannot have been the
chat's own limit.

`ChatPace` is written here rather than taken from aiolimiter: the outbox needs to know *when* a chat may
send next, to schedule thousands of chats on one loop without a waiting coroutine per chat, and aiolimiter
only answers by making the caller wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

CHAT_RATE = 1.0  # messages a second into one chat (Telegram: "avoid more than one per second")
CHAT_BURST = 3  # "short bursts over the limit are allowed" — kept small
GLOBAL_BURST_SECONDS = 0.1  # the global limiter lets this much of a second's sends out at once


def global_limiter(rate: float) -> AsyncLimiter:
    """`rate` sends a second, at most a tenth of a second's worth at once."""
    burst = max(1.0, rate * GLOBAL_BURST_SECONDS)
    return AsyncLimiter(burst, burst / rate)


class ChatPace:
    """A token bucket for one chat: `rate` tokens a second up to `burst`, with an injectable clock."""

    __slots__ = ("_clock", "_tokens", "_when", "burst", "rate")

    def __init__(
        self, rate: float = CHAT_RATE, burst: int = CHAT_BURST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._when = clock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._when) * self.rate)
        self._when = now
        return self._tokens

    def wait(self) -> float:
        """Seconds until the chat may send (0: now)."""
        tokens = self._refill()
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self) -> bool:
        """Spend a token; True if the chat had been quiet (its bucket full), so a 429 now cannot be its own."""
        quiet = self._refill() >= self.burst - 1e-9
        self._tokens -= 1.0
        return quiet

    def idle(self) -> bool:
        """Full again: nothing to remember about this chat."""
        return self._refill() >= self.burst
