"""Invitations: a first message from the Mini App (`sendData`, or the HTTP API through `deliver_invite`) reaches
the ad's author with Accept / Decline / Report; accepting opens an anonymous chat and tells both sides."""

from __future__ import annotations

import contextlib
import json
import logging
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError
from aiogram.types import CallbackQuery, Message

from board.bot.callbacks import InviteAction, InviteButton
from board.bot.common import TEXT_LIMIT, call, notify, partner_label, with_retry
from board.bot.keyboards import invite_keyboard
from board.service import BoardService, InviteSent, UserRef
from board.texts import t
from database.board_models import ReportTarget

log = logging.getLogger(__name__)


async def deliver_invite(bot: Bot, service: BoardService, sent: InviteSent) -> None:
    """Show the ad's author the ad's title, the first message and the answer buttons, in the author's language.

    The invitation is already stored: an author who cannot be reached now is simply not told (logged).
    `service` is unused for now (the invitation carries all it needs); callers pass it for what may come.
    """
    lang = sent.author.lang
    markup = invite_keyboard(lang, sent.invite_id)
    text = t(lang, "invite.new", title=escape(sent.ad_title), message=escape(sent.message))
    visible = t(lang, "invite.new", title=sent.ad_title, message=sent.message).replace("<b>", "").replace("</b>", "")
    try:
        if len(visible) <= TEXT_LIMIT:
            await with_retry(lambda: bot.send_message(sent.author.tg_id, text, reply_markup=markup))
        else:  # title + a message of the full 4096 characters: the header first, the message on its own
            header = t(lang, "invite.new_header", title=escape(sent.ad_title))
            await with_retry(lambda: bot.send_message(sent.author.tg_id, header))
            await with_retry(
                lambda: bot.send_message(sent.author.tg_id, sent.message, reply_markup=markup, parse_mode=None)
            )
    except TelegramForbiddenError:
        log.info("an invitation was not shown: its author has blocked the bot")
    except TelegramAPIError as error:
        log.warning("an invitation was not shown: %s", type(error).__name__)


def _invite_payload(raw: str) -> tuple[str, str] | None:
    """`{"ad_id": ..., "message": ...}` from the Mini App's `sendData`; anything else is None."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    ad_id, text = data.get("ad_id"), data.get("message")
    if not isinstance(ad_id, str) or not isinstance(text, str):
        return None
    return ad_id, text  # an "author_tg_id" or anything else in it is ignored


async def _drop_buttons(query: CallbackQuery) -> None:
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramAPIError):
            await query.message.edit_reply_markup(reply_markup=None)


def build_router() -> Router:
    router = Router(name=__name__)

    async def web_app_data(message: Message, bot: Bot, board: BoardService, me: UserRef, lang: str) -> None:
        assert message.web_app_data is not None
        payload = _invite_payload(message.web_app_data.data)
        if payload is None:
            await message.answer(t(lang, "invite.bad_data"))
            return
        sent = await call(board.send_invite, me, *payload)
        await deliver_invite(bot, board, sent)
        await message.answer(t(lang, "invite.sent", title=escape(sent.ad_title)))

    async def answered(
        query: CallbackQuery, callback_data: InviteButton, bot: Bot, board: BoardService, me: UserRef, lang: str
    ) -> None:
        invite_id = callback_data.id
        if callback_data.action is InviteAction.ACCEPT:
            decision = await call(board.decide_invite, me, invite_id, True)
            await _drop_buttons(query)
            assert decision.chat_id is not None and decision.guest is not None
            title = decision.ad_title
            await notify(
                bot,
                query.from_user.id,
                t(lang, "invite.accepted_author", partner=partner_label(lang, decision.author_alias, title)),
            )
            guest = decision.guest
            told = await notify(
                bot,
                guest.tg_id,
                t(
                    guest.lang,
                    "invite.accepted_guest",
                    title=escape(title),
                    partner=partner_label(guest.lang, decision.guest_alias, title),
                ),
            )
            if not told:  # the guest blocked the bot meanwhile: the chat cannot work
                side = await call(board.chat_side, me, decision.chat_id)
                await call(board.end_unreachable, decision.chat_id, side.partner_user_id)
                gone = t(lang, "chat.partner_gone", partner=partner_label(lang, side.alias, title))
                await notify(bot, query.from_user.id, gone)
        elif callback_data.action is InviteAction.DECLINE:
            await call(board.decide_invite, me, invite_id, False)
            await _drop_buttons(query)
            await notify(bot, query.from_user.id, t(lang, "invite.declined"))
        else:
            await call(board.report, me, ReportTarget.INVITE, invite_id, "")
            await _drop_buttons(query)
            await notify(bot, query.from_user.id, t(lang, "invite.reported"))
        await query.answer()

    router.message.register(web_app_data, F.web_app_data)
    router.callback_query.register(answered, InviteButton.filter())
    return router
