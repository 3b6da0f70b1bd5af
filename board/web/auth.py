"""Who is asking, proven: the Mini App's `Authorization: tma <initData>` header, validated against the bot token.

Telegram signs the `initData` it hands the Mini App with a key derived from the bot's token; aiogram's
`safe_parse_webapp_init_data` checks that signature (a constant-time compare) and parses it. On top of that
the data must be fresh: signed no longer than `max_age` seconds ago and not from the future (beyond a small
clock skew), so a leaked header stops working. Nothing here trusts an id the client merely claims.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiogram.utils.web_app import safe_parse_webapp_init_data

SCHEME = "tma"
MAX_HEADER = 6144  # real initData is well under 2 KiB
FUTURE_SKEW = 60.0  # seconds an auth_date may lie ahead of our clock (clocks differ a little)


class Unauthorized(Exception):
    """The request did not prove who sent it; `reason` is for the log, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WebAppIdentity:
    """The Telegram user a validated initData speaks for (the id stays on the server)."""

    tg_id: int
    language_code: str | None


def init_data_of(header: str | None) -> str:
    """The initData carried by an `Authorization: tma <initData>` header."""
    if not header:
        raise Unauthorized("no Authorization header")
    if len(header) > MAX_HEADER:
        raise Unauthorized("Authorization header too long")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != SCHEME or not value.strip():
        raise Unauthorized("Authorization is not 'tma <initData>'")
    return value.strip()


def authenticate(
    bot_token: str, header: str | None, *, max_age: float, clock: Callable[[], float] = time.time
) -> WebAppIdentity:
    """The user behind a header whose initData Telegram signed for this bot within `max_age` seconds."""
    init_data = init_data_of(header)
    try:
        data = safe_parse_webapp_init_data(bot_token, init_data)
    except (ValueError, TypeError) as exc:  # a bad signature, or a signed payload aiogram cannot parse
        raise Unauthorized(f"initData rejected: {type(exc).__name__}") from None
    signed_at = data.auth_date.timestamp()
    now = clock()
    if signed_at > now + FUTURE_SKEW:
        raise Unauthorized("initData auth_date lies in the future")
    if now - signed_at > max_age:
        raise Unauthorized("initData is stale")
    if data.user is None or not isinstance(data.user.id, int) or data.user.id <= 0:
        raise Unauthorized("initData names no user")
    return WebAppIdentity(data.user.id, data.user.language_code)


def claimed_language(header: str | None) -> str | None:
    """The language an (unverified) initData asks for: only to word a refusal, never to identify anyone."""
    try:
        fields = dict(parse_qsl(init_data_of(header)))
        user = json.loads(fields.get("user", "{}"))
    except (Unauthorized, ValueError):
        return None
    code = user.get("language_code") if isinstance(user, dict) else None
    return code if isinstance(code, str) else None
