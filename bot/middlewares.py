"""The one gate every update passes: admins only (others get one refusal to /start), and their language."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import TelegramObject, Update, User

from bot.i18n import LanguageStore
from bot.texts import t

log = logging.getLogger(__name__)


def _user_of(update: Update) -> User | None:
    event = update.message or update.callback_query or update.edited_message or update.inline_query
    return getattr(event, "from_user", None)


class AccessMiddleware(BaseMiddleware):
    def __init__(self, admin_ids: frozenset[int], languages: LanguageStore) -> None:
        self.admin_ids = admin_ids
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
        if user.id not in self.admin_ids:
            kind = event.event_type
            log.warning("refused %s from non-admin %d (@%s)", kind, user.id, user.username or "-")
            lang = "ru" if (user.language_code or "ru").startswith("ru") else "en"
            message = event.message
            if message is not None and message.text and message.text.split()[0].split("@")[0] == "/start":
                await message.answer(t(lang, "refused"))
            elif event.callback_query is not None:  # answered, or the button's spinner would turn on and on
                with contextlib.suppress(TelegramAPIError):
                    await event.callback_query.answer(t(lang, "refused"), show_alert=True)
            return None
        data["lang"] = await self.languages.get(user.id, user.language_code)
        data["languages"] = self.languages
        return await handler(event, data)
