"""Following account operations: poll a batch's progress and keep one message showing where it stands.

It runs as a background task after the handler returned (`bot.handlers.accounts.follow_up`), so the admin's
next taps are not held up. The message is edited only when its text changes, at most once every
`min_interval` seconds (Telegram limits edits of one message), and a last time when every operation of the
batch is final or the time is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiogram.types import InlineKeyboardMarkup, Message

from backend.operation_views import OperationView
from bot.handlers.base import edit
from bot.operation_views import Phase
from bot.services import BotServices

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
CARD_TIMEOUT = 180.0  # one operation from the card
BATCH_TIMEOUT = 600.0  # a worker's accounts
BATCH_EDIT_EVERY = 1.5

Screen = Callable[[list[OperationView], Phase], Awaitable[tuple[str, InlineKeyboardMarkup | None]]]


async def follow_batch(
    services: BotServices,
    message: Message,
    batch: str,
    screen: Screen,
    timeout: float,
    min_interval: float = 0.0,
    shown: str | None = None,
) -> Phase:
    """Poll `batch` every POLL_SECONDS and show `screen(views, phase)` in `message` as it changes; returns how
    it ended. `shown` is the text the message holds already (not shown again)."""
    assert services.operations is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_edit = loop.time() if shown is not None else float("-inf")
    while True:
        views = await services.call(services.operations.progress, batch)
        now = loop.time()
        if views and all(view.final for view in views):
            # Once more: an operation that finished between the service's two looks at Redis is final there
            # before its result is recorded; this read records it and shows the result.
            views = await services.call(services.operations.progress, batch)
            phase = Phase.DONE
        elif now >= deadline:
            phase = Phase.TIMED_OUT
        else:
            phase = Phase.RUNNING
        text, markup = await screen(views, phase)
        if text != shown and phase is not Phase.RUNNING and now - last_edit < min_interval:
            await asyncio.sleep(min_interval - (now - last_edit))  # the last edit keeps the pace too
            now = loop.time()
        if text != shown and now - last_edit >= min_interval:
            await edit(message, text, markup)
            shown, last_edit = text, now
        if phase is not Phase.RUNNING:
            return phase
        await asyncio.sleep(POLL_SECONDS)


async def guarded(follow: Awaitable[object], what: str) -> None:
    """A follow-up that must not die loudly: Redis or the database gone meanwhile is logged, not raised."""
    try:
        await follow
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - a background edit; the admin can refresh
        log.warning("%s: could not follow the operation (%s)", what, error)
