"""Long polling that never loses an update: Telegram is told an update was handled (the `offset` of the next
`getUpdates`) only once its handling has finished — including anything it left pending, such as an album
still being collected — so whatever it was to send is in the outbox before Telegram forgets the update.

aiogram's own polling confirms each update as soon as it is fetched, so a restart in the middle of handling
would lose it; this loop replaces it and hands each update to the same `Dispatcher.feed_update`. Updates from
one chat are handled one after another, in the order Telegram numbered them (a person's messages reach the
partner in the order they were sent); different chats are handled concurrently.

A handler may `hold` the update it is handling on an awaitable (the relay does, while it collects an album);
the offset stays below that update until the awaitable is done. On `stop()`, fetching ends, the handlers in
progress finish, the holds are released by the caller (the relay sends the albums it was collecting), and a
last `getUpdates` confirms what was handled. After a crash, Telegram delivers the unconfirmed updates again;
the outbox's de-duplication keeps a relayed message from being queued twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError
from aiogram.methods import GetUpdates
from aiogram.types import Update

log = logging.getLogger(__name__)

LIMIT = 100  # updates per getUpdates, Telegram's maximum
HANDLING = 32  # updates handled at once (each chat's in turn): bounds memory and database contention in a burst
RESEEN_WAIT = 0.2  # seconds to wait when Telegram returned only updates still being handled


@dataclass
class Ticket:
    """One update being handled, and what it is still waiting for."""

    update_id: int
    holds: list[asyncio.Future[Any]] = field(default_factory=list)
    notices: int = 0  # replies queued while handling it (their de-duplication keys count up)

    async def settled(self) -> None:
        while self.holds:
            hold = self.holds.pop()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await hold


_current: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("board_update", default=None)


def hold(done: asyncio.Event) -> None:
    """Keep the update being handled unconfirmed until `done` is set (no-op outside this polling)."""
    ticket = _current.get()
    if ticket is not None:
        ticket.holds.append(asyncio.ensure_future(done.wait()))


def next_dedup_key() -> str | None:
    """A key for the next reply the current update queues: the same on a redelivery of the same update."""
    ticket = _current.get()
    if ticket is None:
        return None
    ticket.notices += 1
    return f"update:{ticket.update_id}:{ticket.notices}"


def chat_key(update: Update) -> int | None:
    """Whose updates must be handled in order: the chat's (or the person's, for a button)."""
    for event in (update.message, update.edited_message):
        if event is not None:
            return event.chat.id
    if update.callback_query is not None:
        return update.callback_query.from_user.id
    return None


class OrderedPolling:
    def __init__(
        self,
        dispatcher: Dispatcher,
        bot: Bot,
        *,
        timeout: int = 10,
        allowed_updates: list[str] | None = None,
        **workflow_data: Any,
    ) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.timeout = timeout
        self.allowed_updates = allowed_updates
        self.workflow_data = workflow_data
        self._tickets: dict[int, Ticket] = {}
        self._finished: set[int] = set()
        self._lanes: dict[int | None, asyncio.Queue[tuple[Update, Ticket]]] = {}
        self._lane_tasks: dict[int | None, asyncio.Task[None]] = {}
        self._max_seen = 0
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()
        self._fetch: asyncio.Task[Any] | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._handling = asyncio.Semaphore(HANDLING)

    # ---- the offset -------------------------------------------------------------------------------------

    def offset(self) -> int | None:
        """The first update not yet handled to the end (None before any)."""
        unfinished = [uid for uid in self._tickets if uid not in self._finished]
        if unfinished:
            return min(unfinished)
        return self._max_seen + 1 if self._max_seen else None

    def _forget_confirmed(self, offset: int | None) -> None:
        if offset is None:
            return
        for uid in [uid for uid in self._finished if uid < offset]:
            self._finished.discard(uid)
            self._tickets.pop(uid, None)

    # ---- handling ---------------------------------------------------------------------------------------

    def _admit(self, update: Update) -> None:
        ticket = Ticket(update.update_id)
        self._tickets[update.update_id] = ticket
        key = chat_key(update)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = asyncio.Queue()
            self._lane_tasks[key] = asyncio.create_task(self._lane(key, lane))
        lane.put_nowait((update, ticket))

    async def _lane(self, key: int | None, lane: asyncio.Queue[tuple[Update, Ticket]]) -> None:
        """One chat's updates, one after another; the lane ends when it has nothing left."""
        try:
            while not lane.empty():
                update, ticket = lane.get_nowait()
                token = _current.set(ticket)
                try:
                    async with self._handling:
                        await self.dispatcher.feed_update(self.bot, update, **self.workflow_data)
                except Exception as error:  # noqa: BLE001 - the dispatcher's error handlers had their turn
                    log.error("board: an update failed to be handled: %s", type(error).__name__)
                finally:
                    _current.reset(token)
                finishing = asyncio.create_task(self._finish(ticket))
                self._finishing.add(finishing)
                finishing.add_done_callback(self._finishing.discard)
        finally:
            self._lanes.pop(key, None)
            self._lane_tasks.pop(key, None)

    async def _finish(self, ticket: Ticket) -> None:
        await ticket.settled()
        self._finished.add(ticket.update_id)
        self._progress.set()

    # ---- fetching ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetch and hand out updates until `stop()`; then confirm what was handled."""
        backoff = 1.0
        while not self._stopping.is_set():
            offset = self.offset()
            self._forget_confirmed(offset)
            request = GetUpdates(offset=offset, limit=LIMIT, timeout=self.timeout, allowed_updates=self.allowed_updates)
            self._fetch = asyncio.ensure_future(self.bot(request, request_timeout=self.timeout + 30))
            try:
                updates: list[Update] = await self._fetch
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    break
                raise
            except (TimeoutError, TelegramAPIError, OSError) as error:
                log.warning("board: fetching updates failed (%s); retrying in %.0f s", type(error).__name__, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            fresh = [update for update in updates if update.update_id > self._max_seen]
            for update in fresh:
                self._max_seen = update.update_id
                self._admit(update)
            if updates and not fresh:  # only updates still being handled came back: wait for progress
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), RESEEN_WAIT)

    def stop(self) -> None:
        """Stop fetching (the request waiting for updates is abandoned); `drain` finishes the rest."""
        self._stopping.set()
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()

    async def drain(self, release_holds: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
        """After `stop()`: let the handlers in progress finish, release the holds (`release_holds`, e.g. send
        the albums being collected), and confirm to Telegram every update handled to the end."""
        lanes = list(self._lane_tasks.values())
        if lanes:
            await asyncio.wait(lanes, timeout=timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(release_holds(), timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._finished) < len(self._tickets) and asyncio.get_running_loop().time() < deadline:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.5)
        offset = self.offset()
        if offset is not None:
            with contextlib.suppress(TelegramAPIError, OSError, asyncio.TimeoutError):
                await self.bot(GetUpdates(offset=offset, limit=1, timeout=0), request_timeout=10)
