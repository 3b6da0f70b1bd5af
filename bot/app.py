"""Builds the dispatcher: the access gate, the routers in order, the services in its workflow data."""

from __future__ import annotations

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation

from bot.handlers import (
    accounts,
    add_account,
    board,
    errors,
    export,
    fallback,
    menu,
    operations,
    plugins,
    proxies,
    workers,
)
from bot.i18n import LanguageStore
from bot.live import StatusWatcher
from bot.middlewares import AccessMiddleware
from bot.services import BotServices


def build_dispatcher(
    services: BotServices,
    storage: BaseStorage,
    admin_ids: frozenset[int],
    languages: LanguageStore,
    watcher: StatusWatcher,
) -> Dispatcher:
    """Handlers receive `services` and `watcher` by naming them; the gate adds `lang` and `languages`. The routers
    are built afresh on each call (a router belongs to one dispatcher; tests and restarts build several)."""
    # One update at a time per chat, so a fast typist's messages reach the wizard in order. In-process locks:
    # Telegram allows one consumer of a bot's updates, so there is one bot process (Redis locks would poll).
    dispatcher = Dispatcher(
        storage=storage, events_isolation=SimpleEventIsolation(), services=services, watcher=watcher
    )
    dispatcher.update.outer_middleware(AccessMiddleware(admin_ids, languages))
    dispatcher.include_routers(
        errors.build_router(),
        menu.build_router(),
        workers.build_router(),
        accounts.build_router(),
        operations.build_router(),
        plugins.build_router(),
        export.build_router(),
        proxies.build_router(),
        add_account.build_router(),
        board.build_router(),
        fallback.build_router(),  # last: whatever no other router took
    )
    return dispatcher
