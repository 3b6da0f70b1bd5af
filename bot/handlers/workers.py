"""Workers: the paged list with live 🟢/🔴, a worker's card and its switches, removing, adding."""

from __future__ import annotations

from html import escape

from aiogram import F
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from backend.fleet import InvalidInput, validate_address, validate_worker_name
from bot import views
from bot.callbacks import Menu, MenuAction, WorkerAction, WorkerCard, WorkersPage
from bot.handlers.base import RouterSpec, actor, show
from bot.services import BotServices
from bot.texts import error_text, t

router = RouterSpec(__name__)
PER_PAGE = 10


class AddWorker(StatesGroup):
    name = State()
    address = State()


async def render_workers(event: Message | CallbackQuery, fleet: BotServices, lang: str, page: int) -> None:
    data = await fleet.call(fleet.workers.workers_page, page, PER_PAGE)
    await show(event, *views.workers_page(lang, data))


@router.message(Command("workers"))
@router.callback_query(Menu.filter(F.action == MenuAction.WORKERS))
async def workers(event: Message | CallbackQuery, fleet: BotServices, lang: str) -> None:
    await render_workers(event, fleet, lang, 0)


@router.callback_query(WorkersPage.filter())
async def workers_page(query: CallbackQuery, callback_data: WorkersPage, fleet: BotServices, lang: str) -> None:
    await render_workers(query, fleet, lang, callback_data.page)


async def render_card(event: Message | CallbackQuery, fleet: BotServices, lang: str, worker_id: int) -> None:
    name = await fleet.call(fleet.workers.name_of, worker_id)
    detail = await fleet.call(fleet.workers.get_worker, name)
    await show(event, *views.worker_card(lang, worker_id, detail.worker, detail.rejected_total))


@router.callback_query(WorkerCard.filter(F.action == WorkerAction.CARD))
async def card(query: CallbackQuery, callback_data: WorkerCard, fleet: BotServices, lang: str) -> None:
    await render_card(query, fleet, lang, callback_data.id)


@router.callback_query(WorkerCard.filter(F.action.in_({WorkerAction.ACTIVATE, WorkerAction.DEACTIVATE})))
async def switch(query: CallbackQuery, callback_data: WorkerCard, fleet: BotServices, lang: str) -> None:
    name = await fleet.call(fleet.workers.name_of, callback_data.id)
    active = callback_data.action == WorkerAction.ACTIVATE
    await fleet.call(fleet.workers.set_active, name, active, actor(query.from_user))
    await query.answer(t(lang, "worker.activated" if active else "worker.deactivated", name=name))
    await render_card(query, fleet, lang, callback_data.id)


@router.callback_query(WorkerCard.filter(F.action == WorkerAction.REMOVE))
async def remove(query: CallbackQuery, callback_data: WorkerCard, fleet: BotServices, lang: str) -> None:
    name = await fleet.call(fleet.workers.name_of, callback_data.id)
    yes = WorkerCard(id=callback_data.id, action=WorkerAction.REMOVE_CONFIRMED).pack()
    no = WorkerCard(id=callback_data.id).pack()
    await show(query, *views.confirm(lang, t(lang, "worker.remove.confirm", name=escape(name)), yes, no))


@router.callback_query(WorkerCard.filter(F.action == WorkerAction.REMOVE_CONFIRMED))
async def remove_confirmed(query: CallbackQuery, callback_data: WorkerCard, fleet: BotServices, lang: str) -> None:
    name = await fleet.call(fleet.workers.name_of, callback_data.id)
    await fleet.call(fleet.workers.remove_worker, name, actor(query.from_user))
    await query.answer(t(lang, "worker.removed", name=name))
    await render_workers(query, fleet, lang, 0)


@router.callback_query(Menu.filter(F.action == MenuAction.ADD_WORKER))
async def add_worker(query: CallbackQuery, state: FSMContext, lang: str) -> None:
    await state.set_state(AddWorker.name)
    await show(query, t(lang, "worker.add.name"))


@router.message(AddWorker.name, F.text)
async def add_worker_name(message: Message, state: FSMContext, lang: str) -> None:
    try:
        name = validate_worker_name((message.text or "").strip())
    except InvalidInput as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.update_data(worker_name=name)
    await state.set_state(AddWorker.address)
    await message.answer(t(lang, "worker.add.address", name=escape(name)))


@router.message(AddWorker.address, F.text)
async def add_worker_address(message: Message, state: FSMContext, fleet: BotServices, lang: str) -> None:
    name = (await state.get_data())["worker_name"]
    try:
        address = validate_address(message.text or "")
        await fleet.call(fleet.workers.add_worker, name, address, actor(message.from_user))
    except (InvalidInput, ValueError) as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.clear()
    await message.answer(t(lang, "worker.added", name=escape(name)))
    worker_id = await fleet.call(fleet.workers.id_of, name)
    await render_card(message, fleet, lang, worker_id)


@router.message(AddWorker.name)
@router.message(AddWorker.address)
async def add_worker_not_text(message: Message, lang: str) -> None:
    await message.answer(t(lang, "wizard.expect_text"))
