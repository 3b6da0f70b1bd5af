"""/start and the main menu, the fleet summary, the language switch, and /cancel."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import views
from bot.callbacks import Language, Menu, MenuAction
from bot.handlers.base import show
from bot.i18n import LanguageStore
from bot.services import BotServices
from bot.texts import LANGUAGES, t


def menu_screen(lang: str, services: BotServices) -> tuple[str, InlineKeyboardMarkup]:
    """The main menu with the sections this bot has services for."""
    return views.main_menu(
        lang,
        board=services.board is not None,
        proxies=services.proxies is not None,
        admins=services.admins is not None and services.audit is not None,
        sandbox=services.sandbox,
    )


async def cancel(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    data = await state.get_data()
    if await state.get_state() is None:
        await message.answer(t(lang, "nothing_to_cancel"))
        return
    if data.get("login_id"):
        with contextlib.suppress(Exception):
            await services.call(services.accounts.cancel_login, data["login_id"])
    await state.clear()
    await message.answer(t(lang, "cancelled"), reply_markup=menu_screen(lang, services)[1])


async def start(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    await state.clear()
    await show(message, *menu_screen(lang, services))


async def main_menu(query: CallbackQuery, state: FSMContext, services: BotServices, lang: str) -> None:
    await state.clear()
    await show(query, *menu_screen(lang, services))


async def summary(event: Message | CallbackQuery, services: BotServices, lang: str) -> None:
    data = await services.call(services.fleet.summary)
    await show(event, *views.summary(lang, data))


async def language_picker(event: Message | CallbackQuery, lang: str) -> None:
    await show(event, *views.language_picker(lang))


async def set_language(
    query: CallbackQuery, callback_data: Language, languages: LanguageStore, services: BotServices
) -> None:
    if callback_data.code not in LANGUAGES:
        await query.answer()
        return
    await languages.set(query.from_user.id, callback_data.code)
    await query.answer(t(callback_data.code, "language.set"))
    await show(query, *menu_screen(callback_data.code, services))


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(cancel, Command("cancel"), StateFilter("*"))
    router.message.register(start, CommandStart(), StateFilter("*"))
    router.callback_query.register(main_menu, Menu.filter(F.action == MenuAction.MAIN), StateFilter("*"))
    router.message.register(summary, Command("summary"))
    router.callback_query.register(summary, Menu.filter(F.action == MenuAction.SUMMARY))
    router.message.register(language_picker, Command("language"))
    router.callback_query.register(language_picker, Menu.filter(F.action == MenuAction.LANGUAGE))
    router.callback_query.register(set_language, Language.filter())
    return router
