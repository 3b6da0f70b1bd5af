"""Account operations from the bot: check, sessions, ending the other sessions, the cloud password and the
profile from the account card; check and ending other sessions for every account of a worker from its page.

Each edits its screen to "⏳ …" at once, submits the operation, and leaves the rest to a background task
(`bot.handlers.follow`) that edits the same message as the worker reports. The password form deletes every message
holding a password as soon as it is read, keeps what it needs encrypted, and never shows what was typed.
"""

from __future__ import annotations

import contextlib
from html import escape
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from backend.errors import AccountError
from backend.operation_views import OperationView
from bot import operation_views as ov
from bot import views
from bot.callbacks import (
    AccountAction,
    AccountCard,
    AccountsPage,
    Form,
    FormAction,
    ProfileEdit,
    ProfileField,
    WorkerOpAction,
    WorkerOps,
)
from bot.forms import PasswordForm, ProfileForm, leave_card_form
from bot.handlers import follow
from bot.handlers.accounts import card_screen, follow_up
from bot.handlers.base import actor, edit, show
from bot.handlers.menu import menu_screen
from bot.operation_views import Phase
from bot.services import BotServices
from bot.texts import t
from celery_app.contract import PHOTO_MAX_BYTES
from celery_app.operations import OperationName

CARD_OPERATIONS = {
    AccountAction.CHECK: OperationName.CHECK,
    AccountAction.SESSIONS: OperationName.SESSIONS,
    AccountAction.END_SESSIONS_CONFIRMED: OperationName.TERMINATE_OTHERS,
    AccountAction.TWO_FA: OperationName.TWO_FA,
}


async def _delete(message: Message) -> None:
    with contextlib.suppress(TelegramBadRequest):
        await message.delete()


# --- one operation on the card


async def start_on_card(
    target: CallbackQuery | Message,
    services: BotServices,
    lang: str,
    account_id: int,
    name: OperationName,
    options: dict[str, Any],
    who: str,
) -> None:
    """Show the card with "⏳ <operation>…" (editing the tapped card, or as a new message after a form's
    answer), submit, and follow the outcome in the background."""
    assert services.operations is not None
    text, markup = await card_screen(services, lang, account_id, note=ov.running_note(lang, name))
    if isinstance(target, CallbackQuery):
        await show(target, text, markup)
        message = target.message if isinstance(target.message, Message) else None
    else:
        message = await target.answer(text, reply_markup=markup)
    try:
        batch = await services.call(services.operations.submit, name, [account_id], options, who)
    except AccountError as error:
        note = t(lang, "account.error", error=ov.operation_error(lang, error))
        if message is not None:
            await edit(message, *await card_screen(services, lang, account_id, note=note))
        return
    if message is not None:
        follow_up(follow.guarded(card_outcome(message, services, lang, account_id, batch.batch, name, text), name))


async def card_outcome(
    message: Message, services: BotServices, lang: str, account_id: int, batch: str, name: str, shown: str
) -> None:
    """Edit the card with the operation's outcome as it comes (a flood wait, then the result or failure)."""
    notes = ov.CardNotes(lang, name)
    screens: dict[str, tuple[str, InlineKeyboardMarkup]] = {}

    async def screen(found: list[OperationView], phase: Phase) -> tuple[str, InlineKeyboardMarkup]:
        note, extra = notes.of(found, phase)
        if note not in screens:  # the card is read again only when there is something new to show
            screens.clear()
            screens[note] = await card_screen(services, lang, account_id, note=note, extra_rows=extra)
        return screens[note]

    await follow.follow_batch(services, message, batch, screen, follow.CARD_TIMEOUT, shown=shown)


async def card_operation(
    query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str, state: FSMContext
) -> None:
    await leave_card_form(state)
    name = CARD_OPERATIONS[callback_data.action]
    await start_on_card(query, services, lang, callback_data.id, name, {}, actor(query.from_user))


async def end_sessions(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    yes = AccountCard(id=view.id, action=AccountAction.END_SESSIONS_CONFIRMED).pack()
    question = t(lang, "op.end_sessions.confirm", phone=escape(view.phone_masked))
    await show(query, *views.confirm(lang, question, yes, AccountCard(id=view.id).pack(), "btn.yes_end"))


# --- the cloud password: current (or none), new, new again; each message deleted as soon as it is read


async def password_form(
    query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str, state: FSMContext
) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    await state.set_state(PasswordForm.current)
    await state.set_data({"account_id": view.id, "phone": view.phone_masked})
    await show(query, *ov.password_prompt(lang, "current", view.phone_masked))


async def got_current_password(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    secret = services.accounts.box.encrypt(message.text or "")
    await _delete(message)
    await state.update_data(current_enc=secret)
    await state.set_state(PasswordForm.new)
    text, markup = ov.password_prompt(lang, "new", (await state.get_data()).get("phone", ""))
    await message.answer(text, reply_markup=markup)


async def no_current_password(query: CallbackQuery, state: FSMContext, lang: str) -> None:
    await state.update_data(current_enc=None)
    await state.set_state(PasswordForm.new)
    await show(query, *ov.password_prompt(lang, "new", (await state.get_data()).get("phone", "")))


async def got_new_password(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    secret = services.accounts.box.encrypt(message.text or "")
    await _delete(message)
    await state.update_data(new_enc=secret)
    await state.set_state(PasswordForm.repeat)
    text, markup = ov.password_prompt(lang, "repeat", (await state.get_data()).get("phone", ""))
    await message.answer(text, reply_markup=markup)


async def got_new_password_again(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    again = message.text or ""
    await _delete(message)
    data = await state.get_data()
    box = services.accounts.box
    new = box.decrypt(data["new_enc"]) if data.get("new_enc") else None
    if new != again:
        await state.update_data(new_enc=None)
        await state.set_state(PasswordForm.new)
        text, markup = ov.password_prompt(lang, "mismatch", data.get("phone", ""))
        await message.answer(text, reply_markup=markup)
        return
    await state.clear()  # the encrypted passwords leave Redis here
    options = {
        "current_password": box.decrypt(data["current_enc"]) if data.get("current_enc") else None,
        "new_password": new,
    }
    who = actor(message.from_user)
    await start_on_card(message, services, lang, int(data["account_id"]), OperationName.TWO_FA, options, who)


# --- the profile: which field, then its new value (a photo is downloaded from the chat)


async def profile(
    query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str, state: FSMContext
) -> None:
    await leave_card_form(state)
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    await show(query, *ov.profile_picker(lang, view))


async def profile_field(
    query: CallbackQuery, callback_data: ProfileEdit, services: BotServices, lang: str, state: FSMContext
) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    await state.set_state(ProfileForm.value)
    await state.set_data({"account_id": view.id, "field": callback_data.field.value, "phone": view.phone_masked})
    await show(query, *ov.profile_prompt(lang, callback_data.field.value, view.phone_masked))


async def _photo_of(message: Message, bot: Bot) -> bytes | None:
    """The photo sent (the largest size) or an image sent as a file, downloaded; None if neither came."""
    file = message.photo[-1] if message.photo else message.document
    if file is None:
        return None
    if (file.file_size or 0) > PHOTO_MAX_BYTES:
        megabytes = PHOTO_MAX_BYTES // (1024 * 1024)
        raise AccountError(f"the photo is larger than {megabytes} MB", "photo_too_big", mb=megabytes)
    buffer = await bot.download(file)
    return buffer.read() if buffer is not None else b""


async def got_profile_value(message: Message, state: FSMContext, services: BotServices, bot: Bot, lang: str) -> None:
    assert services.operations is not None
    data = await state.get_data()
    field = str(data.get("field"))
    try:
        if field == ProfileField.PHOTO:
            value: Any = await _photo_of(message, bot)
            if value is None:
                await message.answer(t(lang, "profile.expect_photo"))
                return
        else:
            if not message.text:
                await message.answer(t(lang, "wizard.expect_text"))
                return
            value = ov.profile_value(field, message.text)
        options = {field: value}
        await services.call(services.operations.build_params, OperationName.PROFILE, options)  # bad input: ask again
    except AccountError as error:
        await message.answer(t(lang, "wizard.retry", error=ov.operation_error(lang, error)))
        return
    await state.clear()
    who = actor(message.from_user)
    await start_on_card(message, services, lang, int(data["account_id"]), OperationName.PROFILE, options, who)


async def password_not_text(message: Message, lang: str) -> None:
    await message.answer(t(lang, "wizard.expect_text"))


async def cancel_form(query: CallbackQuery, state: FSMContext, services: BotServices, lang: str) -> None:
    """Leave the form (and what it held) and go back to the account's card."""
    data = await state.get_data()
    await state.clear()
    if "account_id" in data:
        await show(query, *await card_screen(services, lang, int(data["account_id"]), note=t(lang, "cancelled")))
        return
    await show(query, *menu_screen(lang, services))


# --- a worker's accounts: check all, end other sessions for all (one message, edited as results arrive)


CONFIRMED_FOR_ALL = {
    WorkerOpAction.CHECK: WorkerOpAction.CHECK_CONFIRMED,
    WorkerOpAction.END_SESSIONS: WorkerOpAction.END_SESSIONS_CONFIRMED,
}


async def ask_for_all(query: CallbackQuery, callback_data: WorkerOps, services: BotServices, lang: str) -> None:
    """Ask first, naming the worker and how many accounts it touches ("Проверить 143 аккаунта на fra-1?")."""
    assert services.operations is not None
    worker = await services.call(services.fleet.name_of, callback_data.worker_id)
    count = len(await services.call(services.operations.select, (), worker))
    yes = WorkerOps(worker_id=callback_data.worker_id, action=CONFIRMED_FOR_ALL[callback_data.action]).pack()
    check = callback_data.action == WorkerOpAction.CHECK
    await show(query, *ov.batch_confirm(lang, "check" if check else "end_sessions", worker, callback_data.worker_id,
                                        count, yes))  # fmt: skip


async def run_for_worker(query: CallbackQuery, callback_data: WorkerOps, services: BotServices, lang: str) -> None:
    assert services.operations is not None
    worker_id = callback_data.worker_id
    worker = await services.call(services.fleet.name_of, worker_id)
    check = callback_data.action == WorkerOpAction.CHECK_CONFIRMED
    name = OperationName.CHECK if check else OperationName.TERMINATE_OTHERS
    try:
        ids = await services.call(services.operations.select, (), worker)
        batch = await services.call(services.operations.submit, name, ids, {}, actor(query.from_user))
    except AccountError as error:
        back = views.Button(text=t(lang, "btn.back"), callback_data=AccountsPage(worker_id=worker_id).pack())
        await show(query, t(lang, "account.error", error=ov.operation_error(lang, error)), views.keyboard([back]))
        return
    text, markup = ov.batch_progress(lang, name, worker, worker_id, batch.operations, Phase.RUNNING)
    await show(query, text, markup)
    if not isinstance(query.message, Message):
        return

    async def screen(found: list[OperationView], phase: Phase) -> tuple[str, InlineKeyboardMarkup | None]:
        return ov.batch_progress(lang, name, worker, worker_id, found, phase)

    watch = follow.follow_batch(
        services, query.message, batch.batch, screen, follow.BATCH_TIMEOUT, follow.BATCH_EDIT_EVERY, shown=text
    )
    follow_up(follow.guarded(watch, f"{name} on worker {worker}"))


def build_router() -> Router:
    """The first matching handler wins: a form state's catch-all comes after the handlers that take its input."""
    router = Router(name=__name__)
    router.callback_query.register(card_operation, AccountCard.filter(F.action.in_(set(CARD_OPERATIONS))))
    router.callback_query.register(end_sessions, AccountCard.filter(F.action == AccountAction.END_SESSIONS))
    router.callback_query.register(password_form, AccountCard.filter(F.action == AccountAction.PASSWORD))
    router.message.register(got_current_password, PasswordForm.current, F.text)
    router.callback_query.register(
        no_current_password, PasswordForm.current, Form.filter(F.action == FormAction.NO_PASSWORD)
    )
    router.message.register(got_new_password, PasswordForm.new, F.text)
    router.message.register(got_new_password_again, PasswordForm.repeat, F.text)
    router.callback_query.register(profile, AccountCard.filter(F.action == AccountAction.PROFILE))
    router.callback_query.register(profile_field, ProfileEdit.filter())
    router.message.register(got_profile_value, ProfileForm.value)
    router.message.register(password_not_text, PasswordForm.repeat)
    router.message.register(password_not_text, PasswordForm.new)
    router.message.register(password_not_text, PasswordForm.current)
    router.callback_query.register(cancel_form, Form.filter(F.action == FormAction.CANCEL), StateFilter("*"))
    router.callback_query.register(ask_for_all, WorkerOps.filter(F.action.in_(set(CONFIRMED_FOR_ALL))))
    router.callback_query.register(run_for_worker, WorkerOps.filter(F.action.in_(set(CONFIRMED_FOR_ALL.values()))))
    return router
