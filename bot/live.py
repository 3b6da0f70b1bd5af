"""Live account statuses for the bot, driven by the wire event stream (XREAD from the newest entry).

A handler registers interest in an account before acting, then awaits the first status that satisfies its
predicate, or a timeout. One reader task serves every waiting card.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from celery_app import keys
from celery_app.account_state import AccountState
from celery_app.events import WireEventKind

log = logging.getLogger(__name__)
Predicate = Callable[[AccountState], bool]
BLOCK_MS = 2000  # well under the client's socket timeout


class StatusWatcher:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._waiters: dict[int, list[tuple[Predicate, asyncio.Future[AccountState]]]] = {}
        self._last_id = "$"

    async def _anchor(self) -> None:
        """Start from the newest entry that exists now ('$' would skip what arrives between two reads)."""
        newest = await self.redis.xrevrange(keys.EVENTS_STREAM, count=1)
        if newest:
            entry_id = newest[0][0]
            self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        else:
            self._last_id = "0-0"

    async def run(self) -> None:
        while True:
            try:
                if self._last_id == "$":
                    await self._anchor()
                response = await self.redis.xread({keys.EVENTS_STREAM: self._last_id}, count=500, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                log.warning("event stream unavailable (%s); retrying", error)
                await asyncio.sleep(1)
                continue
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    self._dispatch(fields)

    def _dispatch(self, fields: dict[bytes | str, bytes | str]) -> None:
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        if decoded.get("kind") != WireEventKind.ACCOUNT_STATUS.value:
            return
        try:
            state = AccountState.from_fields(json.loads(decoded.get("data") or "{}"))
        except ValueError:
            return
        if state is None:
            return
        for predicate, future in list(self._waiters.get(state.account_id, [])):
            if not future.done() and predicate(state):
                future.set_result(state)

    def expect(self, account_id: int, predicate: Predicate) -> Expectation:
        """Register interest before acting, so no status reported meanwhile is missed; `cancel()` when done."""
        future: asyncio.Future[AccountState] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.setdefault(account_id, []).append(entry)

        def cancel() -> None:
            waiters = self._waiters.get(account_id, [])
            if entry in waiters:
                waiters.remove(entry)
            if not waiters:
                self._waiters.pop(account_id, None)
            if not future.done():
                future.cancel()

        return Expectation(future, cancel)


@dataclass(frozen=True)
class Expectation:
    future: asyncio.Future[AccountState]
    cancel: Callable[[], None]

    async def wait(self, timeout: float) -> AccountState | None:
        """The awaited status, or None after `timeout` seconds; always unregisters."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.future), timeout)
        except TimeoutError:
            return None
        finally:
            self.cancel()
