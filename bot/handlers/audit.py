"""The Audit page (owners): the audit log newest first, paged back by the oldest id shown; `/audit account:17`,
`/audit worker:fra-1`, `/audit actor bot:123` (or a row's 👤/🎯 button) filter it by a target or an actor."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from backend.audit_service import AuditService
from bot.audit_views import PAGE, AuditFilter, audit_page
from bot.callbacks import AuditPage, Menu, MenuAction
from bot.handlers.base import show
from bot.services import BotServices


def log(services: BotServices) -> AuditService:
    assert services.audit is not None, "the Audit page needs the audit service"
    return services.audit


async def render(
    event: Message | CallbackQuery, services: BotServices, lang: str, chosen: AuditFilter, before: int = 0
) -> None:
    rows = await services.call(
        log(services).entries,
        actor=chosen.actor or None,
        target=chosen.target or None,
        before_id=before or None,
        limit=PAGE + 1,
    )
    await show(event, *audit_page(lang, rows[:PAGE], chosen, before, len(rows) > PAGE))


async def audit_command(message: Message, command: CommandObject, services: BotServices, lang: str) -> None:
    await render(message, services, lang, AuditFilter.parse(command.args or ""))


async def audit_menu(query: CallbackQuery, services: BotServices, lang: str) -> None:
    await render(query, services, lang, AuditFilter())


async def audit_more(query: CallbackQuery, callback_data: AuditPage, services: BotServices, lang: str) -> None:
    await render(query, services, lang, AuditFilter.of(callback_data), callback_data.before)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(audit_command, Command("audit"))
    router.callback_query.register(audit_menu, Menu.filter(F.action == MenuAction.AUDIT))
    router.callback_query.register(audit_more, AuditPage.filter())
    return router
