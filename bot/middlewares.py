"""The one gate every update passes: admins only (others get one refusal to /start), their language and role.

An admin's role (`bot.roles_directory`) is put into the handlers' data as `role`, and into `database.audit.acting`
so what the services record names the role and the admin's name. A button, command or form message whose
capability the role lacks (`bot.permissions`: an old message's button, a crafted one) gets one short refusal
and changes nothing; what this bot never defined goes on to the fallback router, as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import TelegramObject, Update, User

from bot.i18n import LanguageStore
from bot.permissions import Rule, callback_rule, message_rules
from bot.roles_directory import RolesDirectory
from bot.texts import t
from common.roles import Role, can
from common.validation import printable
from database.audit import Acting, acting

log = logging.getLogger(__name__)
MAX_NAME = 64


def _user_of(update: Update) -> User | None:
    event = update.message or update.callback_query or update.edited_message or update.inline_query
    return getattr(event, "from_user", None)


def display_name(user: User, table_name: str = "") -> str:
    """How the audit log names an admin: the name owners gave them, else @username, else their first name."""
    name = table_name or (f"@{user.username}" if user.username else user.full_name)
    return " ".join(printable(name).split())[:MAX_NAME]


def rules_for(update: Update, raw_state: str | None) -> list[Rule]:
    if update.callback_query is not None:
        rule = callback_rule(update.callback_query.data or "")
        return [rule] if rule is not None else []
    if update.message is not None:
        return message_rules(update.message.text, raw_state)
    return []


class AccessMiddleware(BaseMiddleware):
    def __init__(self, roles: RolesDirectory, languages: LanguageStore) -> None:
        self.roles = roles
        self.languages = languages

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        user = _user_of(event)
        if user is None:
            return None
        role = await self.roles.role_of(user.id)
        if role is None:
            await self._refuse_stranger(event, user)
            return None
        lang = await self.languages.get(user.id, user.language_code)
        data["lang"] = lang
        data["languages"] = self.languages
        data["role"] = role
        lacking = [rule for rule in rules_for(event, data.get("raw_state")) if not can(role, rule.capability)]
        if lacking:
            await self._refuse(event, user, role, lang)
            return None
        # What the services record names this admin's role and name (`asyncio.to_thread` and the follow-up
        # tasks a handler starts copy the context).
        token = acting.set(Acting(role.value, display_name(user, self.roles.name_of(user.id)), f"bot:{user.id}"))
        try:
            return await handler(event, data)
        finally:
            with contextlib.suppress(ValueError):  # a task torn down at exit ends in another context
                acting.reset(token)

    async def _refuse_stranger(self, event: Update, user: User) -> None:
        log.warning("refused %s from non-admin %d (@%s)", event.event_type, user.id, user.username or "-")
        lang = "ru" if (user.language_code or "ru").startswith("ru") else "en"
        message = event.message
        if message is not None and message.text and message.text.split()[0].split("@")[0] == "/start":
            await message.answer(t(lang, "refused"))
        elif event.callback_query is not None:  # answered, or the button's spinner would turn on and on
            with contextlib.suppress(TelegramAPIError):
                await event.callback_query.answer(t(lang, "refused"), show_alert=True)

    async def _refuse(self, event: Update, user: User, role: Role, lang: str) -> None:
        """One short line, nothing else: no screen, no change."""
        what = event.callback_query.data if event.callback_query is not None else event.event_type
        log.warning("refused %s to admin %d in role %s", printable(str(what))[:80], user.id, role.value)
        with contextlib.suppress(TelegramAPIError):
            if event.callback_query is not None:
                await event.callback_query.answer(t(lang, "role.refused"))
            elif event.message is not None:
                await event.message.answer(t(lang, "role.refused"))
