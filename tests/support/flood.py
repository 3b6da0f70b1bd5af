"""Telegram's flood limits as the Bot API stand-in enforces them: about `rate` messages a second in all and
`chat_rate` a second into one chat, each a token bucket (a short burst is allowed, as Telegram allows one);
beyond them a 429 with `retry_after` in whole seconds, and the refused call counts for nothing."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

# Methods that put or change a message in a chat: what Telegram's flood limits count.
SENDING = frozenset(
    {
        "sendMessage",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    }
)


@dataclass
class FloodLimits:
    """Telegram's limits for a bot: `rate` messages a second in all (a bucket of `burst`), `chat_rate` a second
    into one chat (a bucket of `chat_burst`). Beyond them: 429 with `retry_after` in whole seconds."""

    rate: float = 30.0
    burst: float = 30.0
    chat_rate: float = 1.0
    chat_burst: float = 3.0


class Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.when = burst, time.monotonic()

    def wait(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.when) * self.rate)
        self.when = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class FloodControl:
    """The buckets of one bot: the global one and one per chat. Not thread-safe: the stand-in holds its lock."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self.everything = Bucket(limits.rate, limits.burst)
        self.chats: dict[str, Bucket] = {}

    def refuse(self, chat: str) -> int | None:
        """None if a message to `chat` may go now (and it is counted), else the `retry_after` to answer."""
        bucket = self.chats.get(chat)
        if bucket is None:
            bucket = self.chats[chat] = Bucket(self.limits.chat_rate, self.limits.chat_burst)
        now = time.monotonic()
        wait = max(self.everything.wait(now), bucket.wait(now))
        if wait > 0:
            return max(1, math.ceil(wait))
        self.everything.take()
        bucket.take()
        return None
