"""The Admins page (owners): the admins and their roles, an admin's card (give another role, remove — confirmed),
and the add form: Telegram id → role → an optional name. Each change is one audited call to the admins service;
the gate's copy of the table is read again at once after it (`RolesDirectory.invalidate`)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from backend.admins_service import AdminError, AdminsService, validate_tg_id
from bot import admin_views
from bot.callbacks import AdminAction, AdminCard, AdminRole, Form, FormAction, Menu, MenuAction
from bot.details import error_text
from bot.handlers.base import actor, show
from bot.roles_directory import RolesDirectory
from bot.services import BotServices
from bot.texts import t
from common.roles import Role


class AddAdmin(StatesGroup):
    tg_id = State()
    role = State()
    name = State()


def service(services: BotServices) -> AdminsService:
    assert services.admins is not None, "the Admins page needs the admins service"
    return services.admins


async def render_list(event: Message | CallbackQuery, services: BotServices, lang: str, note: str = "") -> None:
    admins = await services.call(service(services).list_admins)
    await show(event, *admin_views.admins_page(lang, admins, note))


async def admins(event: Message | CallbackQuery, state: FSMContext, services: BotServices, lang: str) -> None:
    await state.clear()
    await render_list(event, services, lang)


async def card(query: CallbackQuery, callback_data: AdminCard, services: BotServices, lang: str) -> None:
    view = await services.call(service(services).get, callback_data.tg_id)
    await show(query, *admin_views.admin_card(lang, view))


async def remove(query: CallbackQuery, callback_data: AdminCard, services: BotServices, lang: str) -> None:
    view = await services.call(service(services).get, callback_data.tg_id)
    await show(query, *admin_views.remove_confirm(lang, view))


async def remove_confirmed(
    query: CallbackQuery, callback_data: AdminCard, services: BotServices, roles: RolesDirectory, lang: str
) -> None:
    view = await services.call(service(services).get, callback_data.tg_id)
    await services.call(service(services).remove, view.tg_id, actor(query.from_user))
    roles.invalidate()
    await render_list(query, services, lang, t(lang, "admin.removed", name=admin_views.label(view)))


async def set_role(
    query: CallbackQuery, callback_data: AdminRole, services: BotServices, roles: RolesDirectory, lang: str
) -> None:
    view = await services.call(
        service(services).set_role, callback_data.tg_id, callback_data.role, actor(query.from_user)
    )
    roles.invalidate()
    note = t(lang, "admin.role_set", role=admin_views.role_name(lang, view.role))
    await show(query, *admin_views.admin_card(lang, view, note))


# --- the add form


async def add_begin(query: CallbackQuery, state: FSMContext, lang: str) -> None:
    await state.clear()
    await state.set_state(AddAdmin.tg_id)
    await show(query, *admin_views.ask_tg_id(lang))


async def got_tg_id(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    try:
        tg_id = validate_tg_id(message.text or "")
        if await services.call(service(services).role_of, tg_id) is not None:
            raise AdminError(f"{tg_id} is an admin already", "admin_exists", tg_id=tg_id)
    except AdminError as error:
        text, markup = admin_views.ask_tg_id(lang, error_text(lang, error))
        await message.answer(text, reply_markup=markup)
        return
    await state.update_data(tg_id=tg_id)
    await state.set_state(AddAdmin.role)
    text, markup = admin_views.ask_role(lang, tg_id)
    await message.answer(text, reply_markup=markup)


async def chose_role(query: CallbackQuery, callback_data: AdminRole, state: FSMContext, lang: str) -> None:
    tg_id = int((await state.get_data())["tg_id"])
    await state.update_data(role=callback_data.role.value)
    await state.set_state(AddAdmin.name)
    await show(query, *admin_views.ask_name(lang, tg_id, callback_data.role))


async def _add(
    event: Message | CallbackQuery, state: FSMContext, services: BotServices, roles: RolesDirectory, lang: str,
    name: str,
) -> None:  # fmt: skip
    data = await state.get_data()
    await state.clear()
    view = await services.call(
        service(services).add, int(data["tg_id"]), Role(data["role"]), name, actor(event.from_user)
    )
    roles.invalidate()
    await show(event, *admin_views.admin_card(lang, view, t(lang, "admin.added")))


async def got_name(
    message: Message, state: FSMContext, services: BotServices, roles: RolesDirectory, lang: str
) -> None:
    await _add(message, state, services, roles, lang, message.text or "")


async def no_name(
    query: CallbackQuery, state: FSMContext, services: BotServices, roles: RolesDirectory, lang: str
) -> None:
    await _add(query, state, services, roles, lang, "")


async def expect_text(message: Message, lang: str) -> None:
    await message.answer(t(lang, "wizard.expect_text"))


async def expect_button(message: Message, lang: str) -> None:
    await message.answer(t(lang, "admin.add.pick_role"))


def build_router() -> Router:
    """The first matching handler wins: a form state's catch-all comes after the handlers that take its input."""
    router = Router(name=__name__)
    router.message.register(admins, Command("admins"))
    router.callback_query.register(admins, Menu.filter(F.action == MenuAction.ADMINS))
    router.callback_query.register(card, AdminCard.filter(F.action == AdminAction.CARD))
    router.callback_query.register(remove, AdminCard.filter(F.action == AdminAction.REMOVE))
    router.callback_query.register(remove_confirmed, AdminCard.filter(F.action == AdminAction.REMOVE_CONFIRMED))
    router.callback_query.register(set_role, AdminRole.filter(F.tg_id != 0))
    router.callback_query.register(add_begin, Menu.filter(F.action == MenuAction.ADD_ADMIN))
    router.message.register(got_tg_id, AddAdmin.tg_id, F.text)
    router.callback_query.register(chose_role, AddAdmin.role, AdminRole.filter(F.tg_id == 0))
    router.message.register(got_name, AddAdmin.name, F.text)
    router.callback_query.register(no_name, AddAdmin.name, Form.filter(F.action == FormAction.NO_NAME))
    router.message.register(expect_text, AddAdmin.tg_id)
    router.message.register(expect_text, AddAdmin.name)
    router.message.register(expect_button, AddAdmin.role)
    return router
