"""/mute: an admin silences their own alerts for a while (`/mute 2h`, `/mute 30m`, `/mute 1d`), ends it early
(`/mute off`), or asks whether they are muted (`/mute`). Recorded in the audit log as `alerts.mute`/`alerts.unmute`
on `admin:<id>` (the only state the bot changes without a service)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.handlers.base import actor
from bot.mutes import MuteStore, parse_span
from bot.services import BotServices
from bot.texts import t
from database.audit import record_audit

OFF_WORDS = ("off", "выкл", "0")


def _when(until: float) -> str:
    return datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _record(services: BotServices, who: str, action: str, user_id: int, span: str | None) -> None:
    with services.fleet.sessions.begin() as session:
        record_audit(session, who, action, [f"admin:{user_id}"], {"for": span} if span else {})


async def mute(message: Message, command: CommandObject, services: BotServices, mutes: MuteStore, lang: str) -> None:
    user = message.from_user
    assert user is not None
    argument = (command.args or "").strip()
    if not argument:
        until = await mutes.until(user.id)
        await message.answer(t(lang, "mute.on", until=_when(until)) if until else t(lang, "mute.off_now"))
        return
    if argument.lower() in OFF_WORDS:
        await mutes.unmute(user.id)
        await services.call(_record, services, actor(user), "alerts.unmute", user.id, None)
        await message.answer(t(lang, "mute.ended"))
        return
    seconds = parse_span(argument)
    if seconds is None:
        await message.answer(t(lang, "mute.usage", given=escape(argument[:40])))
        return
    until = await mutes.mute(user.id, seconds)
    await services.call(_record, services, actor(user), "alerts.mute", user.id, argument)
    await message.answer(t(lang, "mute.set", until=_when(until)))


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(mute, Command("mute"))
    return router
