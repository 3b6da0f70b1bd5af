"""Builds the dispatcher: the access gate, the routers in order, the services in its workflow data."""

from __future__ import annotations

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation

from bot.handlers import (
    accounts,
    add_account,
    admins,
    audit,
    board,
    errors,
    export,
    fallback,
    menu,
    mute,
    operations,
    plugins,
    proxies,
    workers,
)
from bot.i18n import LanguageStore
from bot.live import StatusWatcher
from bot.middlewares import AccessMiddleware
from bot.mutes import MuteStore
from bot.roles_directory import RolesDirectory
from bot.services import BotServices


def build_dispatcher(
    services: BotServices,
    storage: BaseStorage,
    admin_ids: frozenset[int],
    languages: LanguageStore,
    watcher: StatusWatcher,
    roles: RolesDirectory | None = None,
    mutes: MuteStore | None = None,
) -> Dispatcher:
    """Handlers receive `services`, `watcher`, `roles` and `mutes` by naming them; the gate adds `lang`,
    `languages` and `role`. `roles` defaults to the admins table with `admin_ids` as owners. The routers are
    built afresh on each call (a router belongs to one dispatcher; tests and restarts build several)."""
    roles = roles or RolesDirectory.of(services.admins, admin_ids)
    # One update at a time per chat, so a fast typist's messages reach the wizard in order. In-process locks:
    # Telegram allows one consumer of a bot's updates, so there is one bot process (Redis locks would poll).
    dispatcher = Dispatcher(
        storage=storage,
        events_isolation=SimpleEventIsolation(),
        services=services,
        watcher=watcher,
        roles=roles,
        mutes=mutes or MuteStore(languages.redis),
    )
    dispatcher.update.outer_middleware(AccessMiddleware(roles, languages))
    dispatcher.include_routers(
        errors.build_router(),
        menu.build_router(),
        mute.build_router(),
        workers.build_router(),
        accounts.build_router(),
        operations.build_router(),
        plugins.build_router(),
        export.build_router(),
        proxies.build_router(),
        add_account.build_router(),
        board.build_router(),
        admins.build_router(),
        audit.build_router(),
        fallback.build_router(),  # last: whatever no other router took
    )
    return dispatcher
