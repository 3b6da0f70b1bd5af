"""The board bot's outbox: everything the bot sends leaves through here, paced to Telegram's limits, in order per
chat, fairly between chats, and retried until Telegram takes it or refuses it for good.

Rows come from `board_outbox` (written durably, in the transaction that caused them, by this process or any
other: the admin bot's moderation, the CLI). In memory each recipient has a queue ordered by row id; chats
with something to send take turns (round robin), so one chatty pair cannot starve the rest. A send needs a
token from the global limiter (BOARD_SEND_RATE, default 30/s) and from the chat's own pace (about 1/s, a
burst of 3), and no more than one send per chat is in flight, which keeps each chat's order.

Outcomes: taken → the row's effects are recorded and it is gone; 429 → the chat (or, when the chat had been
quiet so the limit cannot have been its own, everything) waits `retry_after`, then the same message goes
again; 403/400 → refused for good (the sender of a relay is told why, in their language); Telegram or the
network down → the same message again after a backoff that grows to a minute. Nothing is dropped because a
counter ran out. A row is marked `sending` before its request and settled after the answer, so a restart
never sends one twice; `stop()` lets the requests in flight finish, so a clean restart loses nothing either.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from sqlalchemy.exc import SQLAlchemyError

from board.bot.pacing import CHAT_BURST, CHAT_RATE, ChatPace, global_limiter
from board.bot.render import Renderer, Unrenderable
from board.service import BoardService
from board.services.outbox import OutboxItem, Refusal

log = logging.getLogger(__name__)

POLL_EVERY = 1.0  # seconds between looks at the table for rows other processes wrote
RECONCILE_EVERY = 10.0  # a full look, for rows that committed out of id order
MAX_IN_FLIGHT = 64
PER_CHAT_LOADED = 16  # rows of one chat held in memory; more wait in the table, fetched as these go out
LOAD_PAGE = 500
STORE_THREADS = 4  # the outbox's own threads for the database: a burst of incoming updates cannot starve it
BACKOFF_MAX = 60.0
STORE_ERRORS = (SQLAlchemyError, OSError)
TRANSIENT = (TelegramServerError, TelegramNetworkError, TelegramUnauthorizedError, asyncio.TimeoutError, OSError)


@dataclass
class OutboxStats:
    sent: int = 0
    refused: int = 0
    flood_waits: int = 0
    global_holds: int = 0
    retries: int = 0


def sent_ids(result: object) -> list[int]:
    """The message ids a send produced (a Message, a MessageId, a list of them; edits give none)."""
    if isinstance(result, list):
        return [int(r.message_id) for r in result if hasattr(r, "message_id")]
    message_id = getattr(result, "message_id", None)
    return [int(message_id)] if message_id is not None else []


class Outbox:
    def __init__(
        self,
        service: BoardService,
        bot: Bot,
        renderer: Renderer,
        *,
        rate: float = 30.0,
        chat_rate: float = CHAT_RATE,
        chat_burst: int = CHAT_BURST,
        poll_every: float = POLL_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.bot = bot
        self.renderer = renderer
        self.stats = OutboxStats()
        self._limiter = global_limiter(rate)
        self._chat_rate, self._chat_burst = chat_rate, chat_burst
        self._poll_every = poll_every
        self._clock = clock
        self._queues: dict[int, list[OutboxItem]] = {}
        self._known: set[int] = set()
        self._ring: deque[int] = deque()
        self._ringed: set[int] = set()
        self._timers: list[tuple[float, int]] = []
        self._timed: set[int] = set()
        self._not_before: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._paces: dict[int, ChatPace] = {}
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._hold_all_until = 0.0
        self._global_failures = 0
        self._watermark = 0
        self._overflow: set[int] = set()  # chats with rows left in the table
        self._drained: dict[int, int] = {}  # the last row id sent to each chat with rows left in the table
        self._dirty = True
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._threads = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="board-outbox")

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A database call on the outbox's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(fn, *args))

    # ---- control ----------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was queued: look at the table now (callable from any thread)."""
        self._dirty = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._kick.set)

    def start(self) -> asyncio.Task[None]:
        self._running = asyncio.create_task(self.run(), name="board-outbox")
        return self._running

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking rows; let the requests in flight finish and be recorded (the rest stay queued)."""
        self._stopping = True
        self._kick.set()
        if self._running is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._running), timeout)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self._threads.shutdown(wait=False)

    async def idle(self, poll: float = 0.02) -> None:
        """Until nothing is queued, in flight, or pending in the table (tests and benchmarks wait on this)."""
        while True:
            if not self._queues and not self._tasks and not self._dirty:
                if await self._db(self.service.outbox_backlog) == 0:
                    return
                self.wake()
            await asyncio.sleep(poll)

    # ---- the loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        interrupted = await self._store(self.service.outbox_interrupted)
        if interrupted:
            log.warning("%d message(s) were being sent when the board stopped: not sent again", interrupted)
        next_poll = next_full = 0.0
        while not self._stopping:
            now = self._clock()
            if self._dirty or now >= next_poll:
                full = now >= next_full
                self._dirty = False
                await self._load(full)
                next_poll = now + self._poll_every
                if full:
                    next_full = now + RECONCILE_EVERY
            now = self._clock()
            self._promote(now)
            if now < self._hold_all_until:
                await self._pause(self._hold_all_until - now)
                continue
            recipient = self._next_ready(now) if len(self._tasks) < MAX_IN_FLIGHT else None
            if recipient is None:
                upcoming = min([next_poll, *(when for when, _ in self._timers[:1])])
                await self._pause(upcoming - self._clock())
                continue
            await self._limiter.acquire()
            if self._stopping or self._clock() < self._hold_all_until:
                self._ring.appendleft(recipient)
                self._ringed.add(recipient)
                continue
            item = self._queues[recipient][0]
            quiet = self._pace(recipient).take()
            self._busy.add(recipient)
            task = asyncio.create_task(self._send(recipient, item, quiet))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pause(self, seconds: float) -> None:
        self._kick.clear()
        if seconds > 0 and not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), seconds)

    async def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A database call off the loop, retried while the database is unreachable (until stopping)."""
        delay = 0.5
        while True:
            try:
                return await self._db(fn, *args)
            except STORE_ERRORS as error:
                if self._stopping:
                    raise
                log.warning("board outbox: the database is unavailable (%s); retrying", type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _load(self, full: bool) -> None:
        """Admit pending rows in id order (from the start on a full look). At most PER_CHAT_LOADED of a chat are
        held in memory, so a flood into one chat neither fills the memory nor delays the other chats."""
        after = 0 if full else self._watermark
        try:
            while True:
                items: list[OutboxItem] = await self._db(self.service.pending_outbox, after, LOAD_PAGE)
                for item in items:
                    self._admit(item)
                if len(items) < LOAD_PAGE:
                    return
                after = items[-1].id
        except STORE_ERRORS as error:
            self._dirty = True
            log.warning("board outbox: cannot read the queue (%s)", type(error).__name__)

    async def _refill(self, recipient: int) -> None:
        """A chat whose rows were left in the table: fetch the next ones once its queue runs low."""
        queue = self._queues.get(recipient, [])
        after = queue[-1].id if queue else self._drained.get(recipient, 0)
        try:
            items = await self._db(self.service.pending_outbox, after, PER_CHAT_LOADED, recipient)
        except STORE_ERRORS as error:
            log.warning("board outbox: cannot read the queue (%s)", type(error).__name__)
            return
        if len(items) < PER_CHAT_LOADED:
            self._overflow.discard(recipient)
        for item in items:
            self._admit(item, refill=True)

    def _admit(self, item: OutboxItem, refill: bool = False) -> None:
        self._watermark = max(self._watermark, item.id)
        if item.id in self._known:
            return
        queue = self._queues.setdefault(item.recipient_id, [])
        if len(queue) >= PER_CHAT_LOADED or (item.recipient_id in self._overflow and not refill):
            self._overflow.add(item.recipient_id)  # left in the table, in order, for `_refill`
            if not queue:
                del self._queues[item.recipient_id]
            return
        self._known.add(item.id)
        if not queue or queue[-1].id < item.id:
            queue.append(item)
        else:  # committed out of id order: its place is by id (the chat's head, if in flight, stays first)
            start = 1 if item.recipient_id in self._busy else 0
            keys = [queued.id for queued in queue]
            queue.insert(max(start, bisect.bisect(keys, item.id)), item)
        self._schedule(item.recipient_id)

    # ---- turns ------------------------------------------------------------------------------------------

    def _pace(self, recipient: int) -> ChatPace:
        pace = self._paces.get(recipient)
        if pace is None:
            pace = self._paces[recipient] = ChatPace(self._chat_rate, self._chat_burst, self._clock)
        return pace

    def _schedule(self, recipient: int) -> None:
        if recipient in self._ringed or recipient in self._timed or recipient in self._busy:
            return
        if self._queues.get(recipient):
            self._ring.append(recipient)
            self._ringed.add(recipient)
            self._kick.set()

    def _timer(self, recipient: int, when: float) -> None:
        self._timed.add(recipient)
        heapq.heappush(self._timers, (when, recipient))

    def _promote(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, recipient = heapq.heappop(self._timers)
            self._timed.discard(recipient)
            self._schedule(recipient)

    def _next_ready(self, now: float) -> int | None:
        while self._ring:
            recipient = self._ring.popleft()
            self._ringed.discard(recipient)
            if recipient in self._busy or not self._queues.get(recipient):
                continue
            held = self._not_before.get(recipient, 0.0)
            if held > now:
                self._timer(recipient, held)
                continue
            wait = self._pace(recipient).wait()
            if wait > 0:
                self._timer(recipient, now + wait)
                continue
            return recipient
        return None

    # ---- one send ---------------------------------------------------------------------------------------

    async def _send(self, recipient: int, item: OutboxItem, quiet: bool) -> None:
        done = False
        try:
            done = await self._deliver(recipient, item, quiet)
        except Exception as error:  # noqa: BLE001 - one bad row must not stop the outbox
            log.error("board outbox: sending a %s failed: %s", item.kind, type(error).__name__, exc_info=False)
            self._backoff(recipient)
        finally:
            self._busy.discard(recipient)
            queue = self._queues.get(recipient)
            if done and queue and queue[0].id == item.id:
                queue.pop(0)
                self._known.discard(item.id)
                self._failures.pop(recipient, None)
                self._not_before.pop(recipient, None)
                if recipient in self._overflow:
                    self._drained[recipient] = item.id
            if recipient in self._overflow and len(queue or []) <= PER_CHAT_LOADED // 2:
                await self._refill(recipient)
                queue = self._queues.get(recipient)
            if recipient not in self._overflow:
                self._drained.pop(recipient, None)
            if queue == []:
                del self._queues[recipient]
                if self._pace(recipient).idle():
                    self._paces.pop(recipient, None)
            self._schedule(recipient)
            self._kick.set()

    async def _deliver(self, recipient: int, item: OutboxItem, quiet: bool) -> bool:
        """Send one row; True when it is settled (sent, refused, or moot), False to try it again later."""
        try:
            prepared = await self._db(self.service.claim_outbox, item.id)
        except STORE_ERRORS as error:
            log.warning("board outbox: cannot claim a row (%s)", type(error).__name__)
            self._backoff(recipient)
            return False
        if prepared is None:
            return True  # settled elsewhere, or its recipient is gone
        if prepared.skip is not None:
            if prepared.skip == "done":
                await self._store(self.service.outbox_sent, item.id, [])
            else:
                await self._store(self.service.outbox_refused, item.id, prepared.skip)
            return True
        try:
            method = self.renderer.render(prepared)
        except Unrenderable as error:
            log.error("board outbox: a %s row cannot be sent: %s", item.kind, error)
            await self._store(self.service.outbox_refused, item.id, Refusal.UNRENDERABLE.value)
            return True
        try:
            result = await self.bot(method)
        except TelegramRetryAfter as error:
            await self._store(self.service.release_outbox, item.id)
            self._flood(recipient, float(error.retry_after), quiet)
            return False
        except TelegramForbiddenError:
            await self._refused(item, Refusal.BLOCKED)
            return True
        except TelegramBadRequest as error:
            if "not modified" in (error.message or "").lower():  # an edit that changes nothing is done
                await self._store(self.service.outbox_sent, item.id, [])
                return True
            log.info("board outbox: Telegram refused a %s (400)", item.kind)
            await self._refused(item, Refusal.BAD_REQUEST)
            return True
        except TRANSIENT as error:
            log.warning("board outbox: Telegram unavailable (%s); will retry", type(error).__name__)
            await self._store(self.service.release_outbox, item.id)
            self._backoff(recipient, everything=True)
            return False
        except TelegramAPIError as error:  # any other refusal of this request is for good
            log.warning("board outbox: Telegram refused a %s (%s)", item.kind, type(error).__name__)
            await self._refused(item, Refusal.BAD_REQUEST)
            return True
        self._global_failures = 0
        await self._store(self.service.outbox_sent, item.id, sent_ids(result))
        self.stats.sent += 1
        return True

    async def _refused(self, item: OutboxItem, refusal: Refusal) -> None:
        self.stats.refused += 1
        await self._store(self.service.outbox_refused, item.id, refusal.value)

    def _flood(self, recipient: int, retry_after: float, quiet: bool) -> None:
        """A 429: this chat waits; everything waits when the chat had been quiet (the limit was not its own)."""
        until = self._clock() + max(retry_after, 0.1)
        self._not_before[recipient] = max(self._not_before.get(recipient, 0.0), until)
        self.stats.flood_waits += 1
        self.stats.retries += 1
        if quiet:
            self.stats.global_holds += 1
            self._hold_all_until = max(self._hold_all_until, until)
            log.warning("board outbox: Telegram's flood limit for the whole bot; holding sends %.0f s", retry_after)
        else:
            log.info("board outbox: a chat's flood limit; it waits %.0f s", retry_after)

    def _backoff(self, recipient: int, everything: bool = False) -> None:
        failures = self._failures[recipient] = self._failures.get(recipient, 0) + 1
        delay = min(BACKOFF_MAX, 0.5 * 2 ** (failures - 1))
        self._not_before[recipient] = self._clock() + delay
        self.stats.retries += 1
        if everything:
            self._global_failures += 1
            pause = min(30.0, 0.5 * 2 ** (self._global_failures - 1))
            self._hold_all_until = max(self._hold_all_until, self._clock() + pause)
