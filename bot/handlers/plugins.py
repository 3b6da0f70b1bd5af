"""Plugins on the account card: the plugins available with ✅/▫️ for this account; tapping an enabled one
disables it, tapping another asks for its JSON configuration (or offers {} when its schema takes it).

A configuration the plugin refuses (not JSON, not an object, against its schema) is shown with the reason and
asked for again; nothing changes until one fits. For a plugin that declares secret configuration
(`SECRET_CONFIG`) the message holding it is deleted from the chat once read.
"""

from __future__ import annotations

import contextlib
from html import escape

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from backend.errors import AccountError
from backend.plugins_service import PluginsService, parse_config
from bot import operation_views as ov
from bot.callbacks import AccountAction, AccountCard, Form, FormAction, PluginToggle
from bot.forms import PluginForm, leave_card_form
from bot.handlers.base import actor, show
from bot.services import BotServices
from bot.texts import t
from celery_app.account_state import AccountStatus


def accepts_empty(plugins: PluginsService, name: str) -> bool:
    """Whether the plugin runs with the configuration {} (then the form offers it as the default)."""
    try:
        plugins.validate(name, {})
    except AccountError:
        return False
    return True


async def plugins_screen(
    services: BotServices, lang: str, account_id: int, note: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    assert services.plugins is not None
    view = await services.call(services.accounts.get_account, account_id, 0)
    catalogue = await services.call(services.plugins.catalogue)
    running = {account_id} if view.live and view.status == AccountStatus.RUNNING else set()
    rows = await services.call(services.plugins.status, [account_id], running=running)
    return ov.plugins_screen(lang, view, catalogue, rows, note)


async def plugins(
    query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str, state: FSMContext
) -> None:
    await leave_card_form(state)
    await show(query, *await plugins_screen(services, lang, callback_data.id))


async def toggle(
    query: CallbackQuery, callback_data: PluginToggle, services: BotServices, lang: str, state: FSMContext
) -> None:
    assert services.plugins is not None
    account_id = callback_data.id
    catalogue = await services.call(services.plugins.catalogue)
    enabled = {row.plugin for row in await services.call(services.plugins.status, [account_id])}
    name = ov.plugin_by_token(sorted(set(catalogue) | enabled), callback_data.plugin)
    if name is None:
        await show(query, *await plugins_screen(services, lang, account_id, t(lang, "plugins.gone")))
        return
    if name in enabled:
        await services.call(services.plugins.disable, name, [account_id], actor(query.from_user))
        note = t(lang, "plugins.disabled", name=escape(name))
        await show(query, *await plugins_screen(services, lang, account_id, note))
        return
    info = catalogue[name]
    if info.error:
        note = t(lang, "account.error", error=t(lang, "plugins.broken", error=escape(info.error)))
        await show(query, *await plugins_screen(services, lang, account_id, note))
        return
    view = await services.call(services.accounts.get_account, account_id, 0)
    default_ok = await services.call(accepts_empty, services.plugins, name)
    await state.set_state(PluginForm.config)
    await state.set_data({"account_id": account_id, "plugin": name, "default_ok": default_ok})
    await show(query, *ov.config_prompt(lang, view, info, default_ok))


async def _enable(
    event: Message | CallbackQuery, state: FSMContext, services: BotServices, lang: str, text: str | None
) -> None:
    """Enable the form's plugin with `text` (JSON; None: the default {}); a refusal asks again, changing nothing."""
    assert services.plugins is not None
    data = await state.get_data()
    account_id, name = int(data["account_id"]), str(data["plugin"])
    try:
        config = parse_config(text) if text is not None else {}
        await services.call(services.plugins.enable, name, [account_id], config, actor(event.from_user))
    except AccountError as error:
        catalogue = await services.call(services.plugins.catalogue)
        view = await services.call(services.accounts.get_account, account_id, 0)
        info = catalogue.get(name)
        if info is None:
            await state.clear()
            await show(event, *await plugins_screen(services, lang, account_id, t(lang, "plugins.gone")))
            return
        problem = ov.operation_error(lang, error)
        await show(event, *ov.config_prompt(lang, view, info, bool(data.get("default_ok")), error=problem))
        return
    await state.clear()
    await show(event, *await plugins_screen(services, lang, account_id, t(lang, "plugins.enabled", name=escape(name))))


async def got_config(message: Message, state: FSMContext, services: BotServices, lang: str) -> None:
    assert services.plugins is not None
    catalogue = await services.call(services.plugins.catalogue)
    info = catalogue.get(str((await state.get_data()).get("plugin")))
    if info is not None and info.secret_keys:  # the chat is no place to keep a secret
        with contextlib.suppress(TelegramBadRequest):
            await message.delete()
    await _enable(message, state, services, lang, message.text or "")


async def default_config(query: CallbackQuery, state: FSMContext, services: BotServices, lang: str) -> None:
    await _enable(query, state, services, lang, None)


async def config_not_text(message: Message, lang: str) -> None:
    await message.answer(t(lang, "wizard.expect_text"))


def build_router() -> Router:
    """The first matching handler wins: the form's catch-all comes after the handler that takes its text."""
    router = Router(name=__name__)
    router.callback_query.register(plugins, AccountCard.filter(F.action == AccountAction.PLUGINS))
    router.callback_query.register(toggle, PluginToggle.filter())
    router.message.register(got_config, PluginForm.config, F.text)
    router.callback_query.register(
        default_config, PluginForm.config, Form.filter(F.action == FormAction.DEFAULT_CONFIG)
    )
    router.message.register(config_not_text, PluginForm.config)
    return router
