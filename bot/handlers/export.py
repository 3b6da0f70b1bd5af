"""Export from the account card: pick a format, confirm, and the bot sends the session to the admin who asked
as a document (a string as a `.txt`, a `.session` file as it is, a `tdata` folder as a `.zip`) with its JSON
sidecar, each captioned as the live credential it is. The export is recorded in the account's events with the
admin as its actor (`backend.session_export`)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.types import BufferedInputFile, CallbackQuery

from backend.errors import AccountError
from bot import export_views
from bot.callbacks import AccountAction, AccountCard, SessionExport
from bot.handlers.accounts import error_note, render_card
from bot.handlers.base import actor, show
from bot.services import BotServices


async def pick(query: CallbackQuery, callback_data: AccountCard, services: BotServices, lang: str) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    await show(query, *export_views.picker(lang, view))


async def export(
    query: CallbackQuery, callback_data: SessionExport, services: BotServices, lang: str, bot: Bot
) -> None:
    view = await services.call(services.accounts.get_account, callback_data.id, 0)
    if not callback_data.confirmed:
        await show(query, *export_views.confirmation(lang, view, callback_data.fmt))
        return
    assert services.export is not None
    fmt = export_views.SESSION_FORMATS[callback_data.fmt]
    try:
        exported = await services.call(services.export.export_one, view.id, fmt, actor=actor(query.from_user))
    except AccountError as error:
        await render_card(query, services, lang, view.id, note=error_note(lang, error))
        return
    chat_id = query.from_user.id
    await bot.send_document(
        chat_id,
        BufferedInputFile(exported.content, exported.name),
        caption=export_views.caption(lang, view, callback_data.fmt),
    )
    await bot.send_document(
        chat_id,
        BufferedInputFile(exported.sidecar, exported.sidecar_name),
        caption=export_views.sidecar_caption(lang),
    )
    await render_card(query, services, lang, view.id, note=export_views.sent_note(lang, callback_data.fmt))


def build_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(pick, AccountCard.filter(F.action == AccountAction.EXPORT))
    router.callback_query.register(export, SessionExport.filter())
    return router
