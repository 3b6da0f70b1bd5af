"""Invitations: a first message from the Mini App (`sendData`, or the HTTP API) is stored with its card for the
ad's author queued in the outbox (Accept / Decline / Report); accepting opens an anonymous chat, and the
sender hears of it. A decline tells the sender nothing."""

from __future__ import annotations

import json
import logging

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from board.bot.callbacks import InviteAction, InviteButton
from board.bot.common import answer, call
from board.bot.replies import Replies
from board.service import BoardService, UserRef
from board.services.outbox import partner
from database.board_models import ReportTarget

log = logging.getLogger(__name__)


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


def build_router() -> Router:
    router = Router(name=__name__)

    async def web_app_data(message: Message, board: BoardService, replies: Replies, me: UserRef) -> None:
        assert message.web_app_data is not None
        payload = _invite_payload(message.web_app_data.data)
        if payload is None:
            await replies.notice(me.id, "invite.bad_data")
            return
        sent = await call(board.send_invite, me, *payload)
        await replies.notice(me.id, "invite.sent", {"title": sent.ad_title})

    async def answered(
        query: CallbackQuery, callback_data: InviteButton, board: BoardService, replies: Replies, me: UserRef
    ) -> None:
        invite_id = callback_data.id
        card = query.message.message_id if isinstance(query.message, Message) else None
        if callback_data.action is InviteAction.ACCEPT:
            decision = await call(board.decide_invite, me, invite_id, True)
            label = partner(decision.author_alias, decision.ad_title)
            reply = ("invite.accepted_author", {"partner": label})
        elif callback_data.action is InviteAction.DECLINE:
            await call(board.decide_invite, me, invite_id, False)
            reply = ("invite.declined", {})
        else:
            await call(board.report, me, ReportTarget.INVITE, invite_id, "")
            reply = ("invite.reported", {})
        if card is not None:
            await replies.edit(me.id, card)
        await replies.notice(me.id, *reply)
        await answer(query)

    router.message.register(web_app_data, F.web_app_data)
    router.callback_query.register(answered, InviteButton.filter())
    return router
