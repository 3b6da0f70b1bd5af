"""The Proxies page: the pool's list (paged, with "check all"), a proxy's card with Check and Remove.

A check asks a worker to connect through the proxy now (`ProxiesService.check`, up to its timeout): the screen
shows "⏳ checking…" at once and a background task (`bot.handlers.accounts.follow_up`) edits the same message
with the outcome when the worker answers. Removal is confirmed first; the service refuses it while accounts use
the proxy, and the refusal offers the other way: remove it and move its accounts to other proxies of its group.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from backend.dispatch import WorkerDidNotAnswer
from backend.proxies_service import ProxiesService
from bot import proxy_views
from bot.callbacks import Menu, MenuAction, ProxiesPage, ProxyAction, ProxyCard
from bot.handlers import follow
from bot.handlers.accounts import error_note, follow_up
from bot.handlers.base import actor, edit, show
from bot.services import BotServices
from database.proxies import ProxyError, ProxyInUse, ProxyNotFound

CHECK_ERRORS = (ProxyError, WorkerDidNotAnswer)


def pool(services: BotServices) -> ProxiesService:
    assert services.proxies is not None, "the Proxies page needs the proxies service"
    return services.proxies


async def list_screen(services: BotServices, lang: str, page: int, note: str = "") -> tuple[str, InlineKeyboardMarkup]:
    proxies = await services.call(pool(services).list_proxies)
    return proxy_views.proxies_page(lang, proxies, page, note)


async def card_screen(
    services: BotServices,
    lang: str,
    proxy_id: int,
    page: int,
    note: str = "",
    offer_reassign: bool = False,
) -> tuple[str, InlineKeyboardMarkup]:
    view, events = await services.call(pool(services).get_proxy, proxy_id)
    extra = [proxy_views.reassign_row(lang, view, page)] if offer_reassign and view.accounts else []
    return proxy_views.proxy_card(lang, view, events, page, note, extra)


async def proxies(event: Message | CallbackQuery, services: BotServices, lang: str) -> None:
    await show(event, *await list_screen(services, lang, 0))


async def proxies_page(query: CallbackQuery, callback_data: ProxiesPage, services: BotServices, lang: str) -> None:
    if not callback_data.check:
        await show(query, *await list_screen(services, lang, callback_data.page))
        return
    count = len(await services.call(pool(services).list_proxies))
    note = proxy_views.checking_all_note(lang, count)
    await show(query, *await list_screen(services, lang, callback_data.page, note))
    if isinstance(query.message, Message):
        outcome = check_all_outcome(query.message, services, lang, callback_data.page)
        follow_up(follow.guarded(outcome, "checking every proxy"))


async def check_all_outcome(message: Message, services: BotServices, lang: str, page: int) -> None:
    try:
        results = await services.call(pool(services).check, None)
        note = proxy_views.check_all_note(lang, results)
    except CHECK_ERRORS as error:
        note = error_note(lang, error)
    await edit(message, *await list_screen(services, lang, page, note))


async def card(query: CallbackQuery, callback_data: ProxyCard, services: BotServices, lang: str) -> None:
    await show(query, *await card_screen(services, lang, callback_data.id, callback_data.page))


async def check(query: CallbackQuery, callback_data: ProxyCard, services: BotServices, lang: str) -> None:
    proxy_id, page = callback_data.id, callback_data.page
    await show(query, *await card_screen(services, lang, proxy_id, page, proxy_views.checking_note(lang)))
    if isinstance(query.message, Message):
        follow_up(follow.guarded(check_outcome(query.message, services, lang, proxy_id, page), f"proxy {proxy_id}"))


async def check_outcome(message: Message, services: BotServices, lang: str, proxy_id: int, page: int) -> None:
    """Edit the card with what the check found when the worker answers (or why there was no check)."""
    try:
        [result] = await services.call(pool(services).check, [proxy_id])
        note = proxy_views.check_note(lang, result)
    except ProxyNotFound as error:  # removed meanwhile
        await edit(message, *await list_screen(services, lang, page, error_note(lang, error)))
        return
    except CHECK_ERRORS as error:
        note = error_note(lang, error)
    await edit(message, *await card_screen(services, lang, proxy_id, page, note))


async def remove(query: CallbackQuery, callback_data: ProxyCard, services: BotServices, lang: str) -> None:
    view, _events = await services.call(pool(services).get_proxy, callback_data.id)
    if callback_data.action == ProxyAction.REASSIGN:
        await show(query, *proxy_views.reassign_confirm(lang, view, callback_data.page))
        return
    await show(query, *proxy_views.remove_confirm(lang, view, callback_data.page))


async def remove_confirmed(query: CallbackQuery, callback_data: ProxyCard, services: BotServices, lang: str) -> None:
    proxy_id, page = callback_data.id, callback_data.page
    reassign = callback_data.action == ProxyAction.REASSIGN_CONFIRMED
    try:
        moved = await services.call(pool(services).remove, proxy_id, reassign, actor(query.from_user))
    except ProxyNotFound as error:  # removed meanwhile
        await show(query, *await list_screen(services, lang, page, error_note(lang, error)))
        return
    except ProxyError as error:  # in use (then the other way is offered), or its group has no room for them
        note = error_note(lang, error)
        offer = isinstance(error, ProxyInUse)
        await show(query, *await card_screen(services, lang, proxy_id, page, note, offer_reassign=offer))
        return
    await show(query, *await list_screen(services, lang, page, proxy_views.removed_note(lang, proxy_id, moved)))


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(proxies, Command("proxies"))
    router.callback_query.register(proxies, Menu.filter(F.action == MenuAction.PROXIES))
    router.callback_query.register(proxies_page, ProxiesPage.filter())
    router.callback_query.register(card, ProxyCard.filter(F.action == ProxyAction.CARD))
    router.callback_query.register(check, ProxyCard.filter(F.action == ProxyAction.CHECK))
    router.callback_query.register(remove, ProxyCard.filter(F.action.in_({ProxyAction.REMOVE, ProxyAction.REASSIGN})))
    router.callback_query.register(
        remove_confirmed,
        ProxyCard.filter(F.action.in_({ProxyAction.REMOVE_CONFIRMED, ProxyAction.REASSIGN_CONFIRMED})),
    )
    return router
