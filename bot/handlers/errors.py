"""Errors from any handler: domain errors become a clear line, service outages a short notice; no tracebacks."""

from __future__ import annotations

import contextlib
import logging
from html import escape

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from backend.errors import DOMAIN_ERRORS
from bot.details import error_text
from bot.texts import DEFAULT_LANGUAGE, t

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, lang: str = DEFAULT_LANGUAGE) -> bool:
    error = event.exception
    if isinstance(error, DOMAIN_ERRORS):
        text = t(lang, "account.error", error=error_text(lang, error))
    elif isinstance(error, RedisError | SQLAlchemyError):
        log.error("service unavailable while handling an update: %s", error)
        text = t(lang, "unavailable", error=escape(error.__class__.__name__))
    else:
        log.exception("unexpected error while handling an update", exc_info=error)
        text = t(lang, "unavailable", error=t(lang, "internal_error"))
    update = event.update
    with contextlib.suppress(TelegramAPIError):
        if update.callback_query is not None:
            await update.callback_query.answer(text.replace("<b>", "").replace("</b>", ""), show_alert=True)
        elif update.message is not None:
            await update.message.answer(text)
    return True


def build_router() -> Router:
    router = Router(name=__name__)
    router.errors.register(on_error)
    return router
