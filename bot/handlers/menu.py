"""/start and the main menu, the fleet summary, the language switch, and /cancel."""

from __future__ import annotations

import contextlib

from aiogram import F
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import views
from bot.callbacks import Language, Menu, MenuAction
from bot.handlers.base import RouterSpec, show
from bot.i18n import LanguageStore
from bot.services import BotServices
from bot.texts import LANGUAGES, t

router = RouterSpec(__name__)


@router.message(Command("cancel"), StateFilter("*"))
async def cancel(message: Message, state: FSMContext, fleet: BotServices, lang: str) -> None:
    data = await state.get_data()
    if await state.get_state() is None:
        await message.answer(t(lang, "nothing_to_cancel"))
        return
    if data.get("login_id"):
        with contextlib.suppress(Exception):
            await fleet.call(fleet.accounts.cancel_login, data["login_id"])
    await state.clear()
    await message.answer(t(lang, "cancelled"), reply_markup=views.main_menu(lang, fleet.board is not None)[1])


@router.message(CommandStart(), StateFilter("*"))
async def start(message: Message, state: FSMContext, fleet: BotServices, lang: str) -> None:
    await state.clear()
    await show(message, *views.main_menu(lang, fleet.board is not None))


@router.callback_query(Menu.filter(F.action == MenuAction.MAIN), StateFilter("*"))
async def main_menu(query: CallbackQuery, state: FSMContext, fleet: BotServices, lang: str) -> None:
    await state.clear()
    await show(query, *views.main_menu(lang, fleet.board is not None))


@router.message(Command("summary"))
@router.callback_query(Menu.filter(F.action == MenuAction.SUMMARY))
async def summary(event: Message | CallbackQuery, fleet: BotServices, lang: str) -> None:
    data = await fleet.call(fleet.workers.summary)
    await show(event, *views.summary(lang, data))


@router.message(Command("language"))
@router.callback_query(Menu.filter(F.action == MenuAction.LANGUAGE))
async def language_picker(event: Message | CallbackQuery, lang: str) -> None:
    await show(event, *views.language_picker(lang))


@router.callback_query(Language.filter())
async def set_language(
    query: CallbackQuery, callback_data: Language, languages: LanguageStore, fleet: BotServices
) -> None:
    if callback_data.code not in LANGUAGES:
        await query.answer()
        return
    await languages.set(query.from_user.id, callback_data.code)
    await query.answer(t(callback_data.code, "language.set"))
    await show(query, *views.main_menu(callback_data.code, fleet.board is not None))
