"""Telethon behind a protocol: what a client must do for the worker (`TelegramClientLike`), the spec one is
built from (`ClientSpec`, secrets never in its repr), the factory that builds one, and the time limits every
call to it runs under. The worker imports Telethon only in `worker.telegram`, the real factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from celery_app.contract import DeviceIdentity
from common.validation import ProxySpec

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0
CALL_TIMEOUT = 30.0
DISCONNECT_TIMEOUT = 5.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class ClientSpec:
    """What a client factory needs; secrets are in clear here and only here (worker memory)."""

    account_id: int
    phone: str
    api_id: int
    api_hash: str
    session: str  # a StringSession, or "" for a new login
    proxy: ProxySpec | None = None
    wire: str = ""  # the encrypted AccountSpec it came from (kept in Redis so the worker can resume it)
    device: DeviceIdentity | None = None  # how the client presents itself to Telegram (the account's own)
    proxy_id: int | None = None  # the pool proxy `proxy` is (`worker.proxy_check` checks it), if any
    receive_updates: bool = True  # False: an account without plugins (its connection is not subscribed)

    def __repr__(self) -> str:
        return f"ClientSpec(account_id={self.account_id}, api_id={self.api_id}, secrets=***)"


class TelegramClientLike(Protocol):
    """The part of Telethon's `TelegramClient` the manager uses (tests check fakes against the real one)."""

    async def connect(self) -> None: ...
    async def is_user_authorized(self) -> bool: ...
    async def get_me(self, input_peer: bool = False) -> Any: ...
    def disconnect(self) -> Awaitable[Any]: ...  # Telethon: a plain method returning a coroutine
    def is_connected(self) -> bool: ...
    @property
    def disconnected(self) -> asyncio.Future[Any]: ...
    async def send_code_request(self, phone: str, *, force_sms: bool = False) -> Any: ...
    async def sign_in(
        self,
        phone: str | None = None,
        code: str | int | None = None,
        *,
        password: str | None = None,
        phone_code_hash: str | None = None,
    ) -> Any: ...


ClientFactory = Callable[[ClientSpec], TelegramClientLike]


@dataclass
class Identity:
    user_id: int | None = None
    username: str | None = None
    name: str | None = None
    phone: str | None = None


def identity_of(user: Any) -> Identity:
    name = " ".join(part for part in (getattr(user, "first_name", None), getattr(user, "last_name", None)) if part)
    return Identity(
        getattr(user, "id", None), getattr(user, "username", None), name or None, getattr(user, "phone", None)
    )
