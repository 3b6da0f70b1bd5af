"""Workers: the paged list with live 🟢/🔴, a worker's card and its switches, removing, adding, and issuing a
worker's own Redis login (`backend.worker_logins`), shown once."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from backend.fleet import InvalidInput, validate_address, validate_worker_name
from bot import views, worker_views
from bot.callbacks import Menu, MenuAction, WorkerAction, WorkerCard, WorkersPage
from bot.details import error_text
from bot.handlers.base import actor, show
from bot.services import BotServices
from bot.texts import t

PER_PAGE = 10


class AddWorker(StatesGroup):
    name = State()
    address = State()


async def render_workers(event: Message | CallbackQuery, services: BotServices, lang: str, page: int) -> None:
    data = await services.call(services.fleet.workers_page, page, PER_PAGE)
    await show(event, *worker_views.workers_page(lang, data))


async def workers(event: Message | CallbackQuery, services: BotServices, lang: str) -> None:
    await render_workers(event, services, lang, 0)


async def workers_page(query: CallbackQuery, callback_data: WorkersPage, services: BotServices, lang: str) -> None:
    await render_workers(query, services, lang, callback_data.page)


async def render_card(event: Message | CallbackQuery, services: BotServices, lang: str, worker_id: int) -> None:
    name = await services.call(services.fleet.name_of, worker_id)
    detail = await services.call(services.fleet.get_worker, name)
    await show(
        event, *worker_views.worker_card(lang, worker_id, detail.worker, detail.rejected_total, detail.own_login)
    )


async def card(query: CallbackQuery, callback_data: WorkerCard, services: BotServices, lang: str) -> None:
    await render_card(query, services, lang, callback_data.id)


async def switch(query: CallbackQuery, callback_data: WorkerCard, services: BotServices, lang: str) -> None:
    name = await services.call(services.fleet.name_of, callback_data.id)
    active = callback_data.action == WorkerAction.ACTIVATE
    await services.call(services.fleet.set_active, name, active, actor(query.from_user))
    await query.answer(t(lang, "worker.activated" if active else "worker.deactivated", name=name))
    await render_card(query, services, lang, callback_data.id)


async def remove(query: CallbackQuery, callback_data: WorkerCard, services: BotServices, lang: str) -> None:
    name = await services.call(services.fleet.name_of, callback_data.id)
    yes = WorkerCard(id=callback_data.id, action=WorkerAction.REMOVE_CONFIRMED).pack()
    no = WorkerCard(id=callback_data.id).pack()
    await show(query, *views.confirm(lang, t(lang, "worker.remove.confirm", name=escape(name)), yes, no))


async def remove_confirmed(query: CallbackQuery, callback_data: WorkerCard, services: BotServices, lang: str) -> None:
    name = await services.call(services.fleet.name_of, callback_data.id)
    await services.call(services.fleet.remove_worker, name, actor(query.from_user))
    await query.answer(t(lang, "worker.removed", name=name))
    await render_workers(query, services, lang, 0)


async def login(query: CallbackQuery, callback_data: WorkerCard, services: BotServices, lang: str) -> None:
    name = await services.call(services.fleet.name_of, callback_data.id)
    detail = await services.call(services.fleet.get_worker, name, 0)
    await show(query, *worker_views.login_question(lang, callback_data.id, name, detail.own_login))


async def login_confirmed(query: CallbackQuery, callback_data: WorkerCard, services: BotServices, lang: str) -> None:
    """Issue the login and show it in place of the question: the one time it is shown."""
    assert services.logins is not None, "issuing a login needs the worker logins service"
    name = await services.call(services.fleet.name_of, callback_data.id)
    issued = await services.call(services.logins.issue, name, actor(query.from_user))
    await show(query, *worker_views.issued_login(lang, callback_data.id, issued))


async def add_worker(query: CallbackQuery, state: FSMContext, lang: str) -> None:
    await state.set_state(AddWorker.name)
    await show(query, t(lang, "worker.add.name"))


async def add_worker_name(message: Message, state: FSMContext, lang: str) -> None:
    try:
        name = validate_worker_name((message.text or "").strip())
    except InvalidInput as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.update_data(worker_name=name)
    await state.set_state(AddWorker.address)
    await message.answer(t(lang, "worker.add.address", name=escape(name)))


async def add_worker_address(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    name = (await state.get_data())["worker_name"]
    try:
        address = validate_address(message.text or "")
        await services.call(services.fleet.add_worker, name, address, actor(message.from_user))
    except (InvalidInput, ValueError) as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.clear()
    worker_id = await services.call(services.fleet.id_of, name)
    text, markup = worker_views.added(lang, worker_id, name)
    await message.answer(text, reply_markup=markup)
    await render_card(message, services, lang, worker_id)


async def add_worker_not_text(message: Message, lang: str) -> None:
    await message.answer(t(lang, "wizard.expect_text"))


def build_router() -> Router:
    """The first matching handler wins: a form state's catch-all comes after the handlers that take its text."""
    router = Router(name=__name__)
    router.message.register(workers, Command("workers"))
    router.callback_query.register(workers, Menu.filter(F.action == MenuAction.WORKERS))
    router.callback_query.register(workers_page, WorkersPage.filter())
    router.callback_query.register(card, WorkerCard.filter(F.action == WorkerAction.CARD))
    router.callback_query.register(
        switch, WorkerCard.filter(F.action.in_({WorkerAction.ACTIVATE, WorkerAction.DEACTIVATE}))
    )
    router.callback_query.register(remove, WorkerCard.filter(F.action == WorkerAction.REMOVE))
    router.callback_query.register(remove_confirmed, WorkerCard.filter(F.action == WorkerAction.REMOVE_CONFIRMED))
    router.callback_query.register(login, WorkerCard.filter(F.action == WorkerAction.LOGIN))
    router.callback_query.register(login_confirmed, WorkerCard.filter(F.action == WorkerAction.LOGIN_CONFIRMED))
    router.callback_query.register(add_worker, Menu.filter(F.action == MenuAction.ADD_WORKER))
    router.message.register(add_worker_name, AddWorker.name, F.text)
    router.message.register(add_worker_address, AddWorker.address, F.text)
    router.message.register(add_worker_not_text, AddWorker.address)
    router.message.register(add_worker_not_text, AddWorker.name)
    return router
