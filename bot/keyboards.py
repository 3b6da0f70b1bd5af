"""Only the buttons a role may press: every inline keyboard the bot sends to an admin's private chat passes here
(an aiogram request middleware on the bot's session) and loses the buttons `bot.permissions` says the chat's
role may not press; rows left empty go. Views stay role-blind: this is the one place that filters."""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InlineKeyboardMarkup

from bot.permissions import allowed_markup
from bot.roles_directory import RolesDirectory


class ButtonFilter(BaseRequestMiddleware):
    def __init__(self, roles: RolesDirectory) -> None:
        self.roles = roles

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        markup: Any = getattr(method, "reply_markup", None)
        chat_id: Any = getattr(method, "chat_id", None)
        if isinstance(markup, InlineKeyboardMarkup) and isinstance(chat_id, int) and chat_id > 0:
            role = await self.roles.role_of(chat_id)
            method = method.model_copy(update={"reply_markup": allowed_markup(markup, role)})
        return await make_request(bot, method)


def install_button_filter(bot: Bot, roles: RolesDirectory) -> None:
    """Filter every keyboard `bot` sends by the role of the chat it goes to (bot.main and the tests' harness)."""
    bot.session.middleware(ButtonFilter(roles))
