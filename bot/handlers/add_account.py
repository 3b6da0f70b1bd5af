"""The add-account wizard: worker → method → phone → API ID → API hash → code → 2FA, or a session import: a
pasted Telethon or Pyrogram string, or a file in any format (`backend.session_uploads`: a `.session`, a `.txt`
of strings, a `.zip` of a tdata folder — asking its local passcode, and for several accounts their phones).
While the pool of API apps has room (`run_cli.py apps`), the API ID and hash steps are skipped: the account
gets an app of the pool.

State lives in Redis (a bot restart keeps the admin's place). Secrets never sit there in clear: the API hash
and a tdata's passcode are kept encrypted, an uploaded file by its Telegram file id only (read again at each
step), the 2FA password and session strings are used at once; every message holding one is deleted.
Every step validates and asks again with the reason; /cancel works anywhere.
"""

from __future__ import annotations

import contextlib

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from backend import session_uploads
from backend.account_views import AccountView
from backend.errors import AccountError, LoginError
from bot import import_views, views
from bot.callbacks import Menu, MenuAction, WizardMethod, WizardWorker
from bot.details import error_text
from bot.handlers.base import actor, show
from bot.services import BotServices
from bot.texts import t
from common.validation import InvalidValue, normalize_phone, validate_api_hash, validate_api_id
from database.errors import AppError


class AddAccount(StatesGroup):
    worker = State()
    method = State()
    phone = State()
    api_id = State()
    api_hash = State()
    code = State()
    password = State()
    session = State()
    passcode = State()
    phones = State()


async def _delete(message: Message) -> None:
    with contextlib.suppress(TelegramBadRequest):
        await message.delete()


async def _done(message: Message, state: FSMContext, services: BotServices, lang: str, view: AccountView) -> None:
    await state.clear()
    worker_id = await services.call(services.fleet.id_of, view.worker) if view.worker else None
    text, markup = views.account_card(lang, view, worker_id)
    await message.answer(f"{t(lang, 'wizard.done')}\n\n{text}", reply_markup=markup)


async def begin(event: Message | CallbackQuery, state: FSMContext, services: BotServices, lang: str) -> None:
    await state.clear()
    workers = await services.call(services.fleet.usable_workers)
    choices = [(w.id, w.name) for w in workers if w.id is not None]
    if choices:
        await state.set_state(AddAccount.worker)
    await show(event, *views.wizard_workers(lang, choices))


async def chose_worker(
    query: CallbackQuery, callback_data: WizardWorker, state: FSMContext, services: BotServices, lang: str
) -> None:
    name = await services.call(services.fleet.name_of, callback_data.worker_id)
    await state.update_data(worker=name)
    await state.set_state(AddAccount.method)
    await show(query, *views.wizard_methods(lang))


async def chose_method(query: CallbackQuery, callback_data: WizardMethod, state: FSMContext, lang: str) -> None:
    await state.update_data(method=callback_data.method)
    await state.set_state(AddAccount.phone)
    await show(query, t(lang, "wizard.phone"))


async def got_phone(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    try:
        phone = normalize_phone(message.text or "")
    except InvalidValue as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.update_data(phone=phone)
    if await services.call(services.accounts.app_pool_has_room):
        await message.answer(t(lang, "wizard.pool_app"))
        await _credentials_given(message, state, services, lang, None)
        return
    await state.set_state(AddAccount.api_id)
    await message.answer(t(lang, "wizard.api_id"))


async def got_api_id(message: Message, state: FSMContext, lang: str) -> None:
    try:
        api_id = validate_api_id(message.text or "")
    except InvalidValue as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.update_data(api_id=api_id)
    await state.set_state(AddAccount.api_hash)
    await message.answer(t(lang, "wizard.api_hash"))


async def got_api_hash(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    try:
        api_hash = validate_api_hash(message.text or "")
    except InvalidValue as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await _delete(message)  # an API hash is a credential: do not leave it in the chat
    await state.update_data(api_hash_enc=services.accounts.box.encrypt(api_hash))
    await _credentials_given(message, state, services, lang, api_hash)


async def _credentials_given(
    message: Message, state: FSMContext, services: BotServices, lang: str, api_hash: str | None
) -> None:
    """On to the session (an import) or the code (a login); no `api_hash`: an app of the pool."""
    data = await state.get_data()
    if data["method"] == "import":
        await state.set_state(AddAccount.session)
        await message.answer(t(lang, "wizard.session"))
        return
    await message.answer(t(lang, "wizard.sending_code"))
    try:
        step = await services.call(
            services.accounts.begin_login,
            data["worker"],
            data["phone"],
            data.get("api_id"),
            api_hash,
            actor=actor(message.from_user),
        )
    except (AccountError, AppError) as error:
        await state.clear()
        await message.answer(t(lang, "wizard.failed", error=error_text(lang, error)))
        return
    await state.update_data(login_id=step.login_id)
    await state.set_state(AddAccount.code)
    await message.answer(t(lang, "wizard.code"))


async def _login_step(message: Message, state: FSMContext, services: BotServices, lang: str, password: bool) -> None:
    data = await state.get_data()
    text = message.text or ""
    if password:
        await _delete(message)
    await message.answer(t(lang, "wizard.checking"))
    try:
        call = services.accounts.submit_password if password else services.accounts.submit_code
        step = await services.call(call, data["login_id"], text)
    except LoginError as error:
        if error.retry:
            await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
            return
        await state.clear()
        await message.answer(t(lang, "wizard.failed", error=error_text(lang, error)))
        return
    if step.state == "password_needed":
        await state.set_state(AddAccount.password)
        await message.answer(t(lang, "wizard.password"))
        return
    assert step.account is not None
    await _done(message, state, services, lang, step.account)


async def got_code(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    await _login_step(message, state, services, lang, password=False)


async def got_password(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    await _login_step(message, state, services, lang, password=True)


async def _import(message: Message, state: FSMContext, services: BotServices, lang: str, string: str) -> None:
    data = await state.get_data()
    api_hash = services.accounts.box.decrypt(data["api_hash_enc"]) if data.get("api_hash_enc") else None
    try:
        view = await services.call(
            services.accounts.import_session,
            data["worker"],
            data.get("api_id"),
            api_hash,
            session_string=string,
            phone=data["phone"],
            actor=actor(message.from_user),
        )
    except (AccountError, AppError) as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await _done(message, state, services, lang, view)


async def got_session_string(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    text = (message.text or "").strip()
    await _delete(message)  # a session string is the account itself
    await _import(message, state, services, lang, text)


async def got_session_file(message: Message, state: FSMContext, services: BotServices, bot: Bot, lang: str) -> None:
    document = message.document
    assert document is not None
    name = document.file_name or ""
    if (document.file_size or 0) > session_uploads.max_bytes(name):
        megabytes = session_uploads.MAX_ARCHIVE_BYTES // 2**20
        await message.answer(t(lang, "wizard.retry", error=t(lang, "wizard.file_too_big", mb=megabytes)))
        return
    await _delete(message)  # a session file is the account itself
    await state.update_data(upload_file=document.file_id, upload_name=name, passcode_enc=None, phones=None)
    await _import_upload(message, state, services, bot, lang)


async def got_passcode(message: Message, state: FSMContext, services: BotServices, bot: Bot, lang: str) -> None:
    passcode = message.text or ""
    await _delete(message)  # never left in the chat
    await state.update_data(passcode_enc=services.accounts.box.encrypt(passcode))
    await _import_upload(message, state, services, bot, lang)


async def got_phones(message: Message, state: FSMContext, services: BotServices, bot: Bot, lang: str) -> None:
    try:
        phones = [normalize_phone(line) for line in (message.text or "").splitlines() if line.strip()]
    except InvalidValue as error:
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    await state.update_data(phones=phones)
    await _import_upload(message, state, services, bot, lang)


async def _import_upload(message: Message, state: FSMContext, services: BotServices, bot: Bot, lang: str) -> None:
    """Read the uploaded file again (with the passcode and phones given so far), then ask what is missing or
    import every account in it: one shows its card, several a line each."""
    data = await state.get_data()
    buffer = await bot.download(data["upload_file"])
    content = buffer.read() if buffer is not None else b""
    box = services.accounts.box
    passcode = box.decrypt(data["passcode_enc"]) if data.get("passcode_enc") else None
    try:
        upload = await services.call(session_uploads.read_upload, data["upload_name"], content, passcode)
        phones = session_uploads.phones_for(upload, data["phone"], data.get("phones") or [])
    except AccountError as error:
        if error.code == "passcode_required":
            await state.set_state(AddAccount.passcode)
            await message.answer(t(lang, "wizard.passcode"))
            return
        if error.code == "phones_count":
            await state.update_data(phones=None)
        elif error.code != "passcode_wrong":
            await state.set_state(AddAccount.session)  # another file, or /cancel
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, error)))
        return
    if phones is None:
        await state.set_state(AddAccount.phones)
        await message.answer(import_views.ask_phones(lang, upload.unnamed))
        return
    api_hash = box.decrypt(data["api_hash_enc"]) if data.get("api_hash_enc") else None
    outcomes = await services.call(
        session_uploads.import_upload,
        services.accounts,
        upload,
        data["worker"],
        phones,
        data.get("api_id"),
        api_hash,
        actor=actor(message.from_user),
    )
    if len(outcomes) == 1:
        only = outcomes[0]
        if only.account is not None:
            await _done(message, state, services, lang, only.account)
            return
        await state.set_state(AddAccount.session)
        await message.answer(t(lang, "wizard.retry", error=error_text(lang, only.error or Exception("?"))))
        return
    await state.clear()
    await message.answer(import_views.import_report(lang, outcomes))


async def not_text(message: Message, lang: str) -> None:
    await message.answer(t(lang, "wizard.expect_text"))


def build_router() -> Router:
    """The first matching handler wins: a wizard step's catch-all comes after the handlers that take its input."""
    router = Router(name=__name__)
    router.message.register(begin, Command("add"))
    router.callback_query.register(begin, Menu.filter(F.action == MenuAction.ADD_ACCOUNT))
    router.callback_query.register(chose_worker, AddAccount.worker, WizardWorker.filter())
    router.callback_query.register(
        chose_method, AddAccount.method, WizardMethod.filter(F.method.in_({"login", "import"}))
    )
    router.message.register(got_phone, AddAccount.phone, F.text)
    router.message.register(got_api_id, AddAccount.api_id, F.text)
    router.message.register(got_api_hash, AddAccount.api_hash, F.text)
    router.message.register(got_code, AddAccount.code, F.text)
    router.message.register(got_password, AddAccount.password, F.text)
    router.message.register(got_session_string, AddAccount.session, F.text)
    router.message.register(got_session_file, AddAccount.session, F.document)
    router.message.register(got_passcode, AddAccount.passcode, F.text)
    router.message.register(got_phones, AddAccount.phones, F.text)
    router.message.register(not_text, AddAccount.passcode)
    router.message.register(not_text, AddAccount.phones)
    router.message.register(not_text, AddAccount.session)
    router.message.register(not_text, AddAccount.password)
    router.message.register(not_text, AddAccount.code)
    router.message.register(not_text, AddAccount.api_hash)
    router.message.register(not_text, AddAccount.api_id)
    router.message.register(not_text, AddAccount.phone)
    return router
