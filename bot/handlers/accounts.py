"""Accounts: paged lists (all or per worker), the account card, live start/stop/restart, move, remove."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from html import escape
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from backend.errors import AccountError, WorkerUnavailable
from bot import views
from bot.callbacks import AccountAction, AccountCard, AccountsPage, Menu, MenuAction, MoveTo
from bot.details import error_text
from bot.forms import leave_card_form
from bot.handlers.base import actor, show
from bot.live import Expectation, StatusWatcher
from bot.services import BotServices
from bot.texts import t
from celery_app.account_state import AccountStatus

PER_PAGE = 10
OUTCOME_TIMEOUT = 30.0


async def render_page(
    event: Message | CallbackQuery, services: BotServices, lang: str, worker_id: int, page: int
) -> None:
    data = await services.call(services.accounts.accounts_page, page, PER_PAGE, worker_id or None)
    worker_name = await services.call(services.fleet.name_of, worker_id) if worker_id else None
    await show(event, *views.accounts_page(lang, data, worker_id, worker_name, services.operations is not None))


async def accounts(event: Message | CallbackQuery, services: BotServices, lang: str) -> None:
    await render_page(event, services, lang, 0, 0)


async def accounts_page(query: CallbackQuery, callback_data: AccountsPage, services: BotServices, lang: str) -> None:
    await render_page(query, services, lang, callback_data.worker_id, callback_data.page)


def error_note(lang: str, error: BaseException) -> str:
    return t(lang, "account.error", error=error_text(lang, error))


async def card_screen(
    services: BotServices,
    lang: str,
    account_id: int,
    note: str = "",
    status: str | None = None,
    extra_rows: list[list[views.Button]] | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    """The account's card (with its enabled plugins as the worker reports them) and `note` under it."""
    view = await services.call(services.accounts.get_account, account_id, 0)
    worker_id = await services.call(services.fleet.id_of, view.worker) if view.worker else None
    plugins = []
    if services.plugins is not None:
        running = {account_id} if view.live and view.status == AccountStatus.RUNNING else set()
        plugins = await services.call(services.plugins.status, [account_id], running=running)
    text, markup = views.account_card(
        lang,
        view,
        worker_id,
        override_status=status,
        plugins=plugins,
        extra_rows=extra_rows or [],
        operations=services.operations is not None,
        with_plugins=services.plugins is not None,
    )
    return (f"{text}\n\n{note}" if note else text), markup


async def render_card(
    event: Message | CallbackQuery,
    services: BotServices,
    lang: str,
    account_id: int,
    note: str = "",
    status: str | None = None,
) -> None:
    await show(event, *await card_screen(services, lang, account_id, note, status))


async def card(
    query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str, state: FSMContext
) -> None:
    await leave_card_form(state)
    await render_card(query, services, lang, callback_data.id)


async def start(
    query: CallbackQuery, callback_data: AccountCard, services: BotServices, watcher: StatusWatcher, lang: str
) -> None:
    """Edit the card to "starting…" at once; a background task edits it again with the outcome the worker
    reports on the event stream (or a timeout note), so this chat's next taps are not held up meanwhile."""
    account_id = callback_data.id
    await render_card(query, services, lang, account_id, status=t(lang, "account.starting"))
    call = services.accounts.restart if callback_data.action == AccountAction.RESTART else services.accounts.start
    expectation = watcher.expect(account_id, lambda s: s.status not in (AccountStatus.STARTING, AccountStatus.STOPPED))
    try:
        await services.call(call, account_id, actor(query.from_user))
    except WorkerUnavailable as error:
        expectation.cancel()
        await show(query, *views.when_back(lang, account_id, error_text(lang, error)))
        return
    except AccountError as error:
        expectation.cancel()
        await render_card(query, services, lang, account_id, note=error_note(lang, error))
        return
    follow_up(show_outcome(query, services, lang, account_id, expectation))


_follow_ups: set[asyncio.Task[None]] = set()


def follow_up(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a card update after the handler returns (keeping a reference so it is not collected)."""
    task = asyncio.create_task(coroutine)
    _follow_ups.add(task)
    task.add_done_callback(_follow_ups.discard)


async def show_outcome(
    query: CallbackQuery, services: BotServices, lang: str, account_id: int, expectation: Expectation
) -> None:
    if await expectation.wait(OUTCOME_TIMEOUT) is None:
        await render_card(query, services, lang, account_id, note=t(lang, "account.timeout"))
        return
    await render_card(query, services, lang, account_id)


async def start_when_back(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    result = await services.call(services.accounts.start, callback_data.id, actor(query.from_user), True)
    if result.dispatched:  # the worker came back meanwhile
        await render_card(query, services, lang, callback_data.id)
        return
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    note = t(lang, "account.when_back", id=view.id, worker=escape(view.worker or "—"))
    await render_card(query, services, lang, callback_data.id, note=note)


async def stop(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    await render_card(query, services, lang, callback_data.id, status=t(lang, "account.stopping"))
    try:
        await services.call(services.accounts.stop, callback_data.id, actor(query.from_user))
    except AccountError as error:
        await render_card(query, services, lang, callback_data.id, note=error_note(lang, error))
        return
    await render_card(query, services, lang, callback_data.id)


async def move(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    targets = await services.call(services.fleet.usable_workers, view.worker)
    choices = [(w.id, w.name) for w in targets if w.id is not None]
    await show(query, *views.move_picker(lang, view, choices))


def moved_note(lang: str, source: str | None, target: str, starting: bool) -> str:
    """What a move did, in the bot's words (the service's `message` is for the CLI)."""
    if source is None:
        note = t(lang, "account.moved.to", target=escape(target))
    else:
        note = t(lang, "account.moved", source=escape(source), target=escape(target))
    return f"{note} {t(lang, 'account.moved.starting')}" if starting else note


async def move_to(query: CallbackQuery, callback_data: MoveTo, services: BotServices, lang: str) -> None:
    target = await services.call(services.fleet.name_of, callback_data.worker_id)
    source = (await services.call(services.accounts.get_account, callback_data.id, 0)).worker
    try:
        result = await services.call(services.accounts.move, callback_data.id, target, actor(query.from_user))
    except AccountError as error:
        await render_card(query, services, lang, callback_data.id, note=error_note(lang, error))
        return
    note = moved_note(lang, source, target, result.dispatched)
    await render_card(query, services, lang, callback_data.id, note=note)


async def remove(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    yes = AccountCard(id=callback_data.id, action=AccountAction.REMOVE_CONFIRMED).pack()
    no = AccountCard(id=callback_data.id).pack()
    await show(query, *views.confirm(lang, t(lang, "account.remove.confirm", phone=escape(view.phone_masked)), yes, no))


async def remove_confirmed(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    await services.call(services.accounts.remove, callback_data.id, actor(query.from_user))
    await query.answer(t(lang, "account.removed", phone=view.phone_masked))
    await render_page(query, services, lang, 0, 0)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(accounts, Command("accounts"))
    router.callback_query.register(accounts, Menu.filter(F.action == MenuAction.ACCOUNTS))
    router.callback_query.register(accounts_page, AccountsPage.filter())
    router.callback_query.register(card, AccountCard.filter(F.action == AccountAction.CARD))
    router.callback_query.register(
        start, AccountCard.filter(F.action.in_({AccountAction.START, AccountAction.RESTART}))
    )
    router.callback_query.register(start_when_back, AccountCard.filter(F.action == AccountAction.START_WHEN_BACK))
    router.callback_query.register(stop, AccountCard.filter(F.action == AccountAction.STOP))
    router.callback_query.register(move, AccountCard.filter(F.action == AccountAction.MOVE))
    router.callback_query.register(move_to, MoveTo.filter())
    router.callback_query.register(remove, AccountCard.filter(F.action == AccountAction.REMOVE))
    router.callback_query.register(remove_confirmed, AccountCard.filter(F.action == AccountAction.REMOVE_CONFIRMED))
    return router
