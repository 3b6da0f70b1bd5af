"""A fake Telegram at the client-factory boundary, for worker processes under test and the benchmarks.

Workers load it with FLEET_CLIENT_FACTORY=tests.support.fake_telegram:factory. Behaviour per phone number
comes from the JSON file named by FAKE_TELEGRAM_SCRIPT (re-read at every connect, so a test can change it):

    {"+15550000001": {"connect": "unauthorized"}, "+15550000002": {"connect": "flood:120"},
     "+15550000003": {"login": {"code": "12345", "password": "hunter2"}}}

`connect` is one of ok (default), unauthorized, banned, duplicated, network, flood:SECONDS, drop:SECONDS.
Like Telegram, it refuses a second live connection of the same account from anywhere (AUTH_KEY_DUPLICATED):
with FAKE_TELEGRAM_REDIS set, live connections are tracked in that Redis across processes (`pid:client` per
phone) and every such attempt is recorded in the list `fake:violations`, which tests assert stays empty.
That Redis is Telegram's state: tests that restart the fleet's Redis give the fake a Redis of its own. As a
real server sees a killed process's TCP connections close, a connection whose process has died is gone.
Like Telegram, it sees the device identity each client connects with: recorded per phone in the hash
`fake:devices` (JSON, or "null" for a client given none) at every connect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from telethon import errors

from common.sessions import SessionData
from tests.support.fake_account_api import AccountApiMixin
from tests.support.fake_events import EventsMixin
from worker.clients import ClientSpec
from worker.presence import pid_alive

VIOLATIONS = "fake:violations"
DEVICES = "fake:devices"


def holder_alive(holder: str | None) -> bool:
    """Whether the process holding a connection (`pid:client`) still exists."""
    if not holder:
        return False
    pid = holder.split(":", 1)[0]
    return pid.isdigit() and pid_alive(int(pid))


_CLAIM = """
local current = redis.call('GET', KEYS[1])
if (not current and ARGV[2] == '') or current == ARGV[2] or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return current or ''
"""


def _claim(redis: Any, key: str, me: str, replacing: str) -> str:
    """Take the connection slot if free (or held by `replacing`), atomically; returns who holds it now."""
    return str(redis.eval(_CLAIM, 1, key, me, replacing))


def live_connections(redis: Any) -> dict[str, str]:
    """phone -> `pid:client` of every connection Telegram sees open now."""
    found: dict[str, str] = {}
    for key in redis.scan_iter("fake:connected:*", count=1000):
        holder = redis.get(key)
        if holder_alive(holder):
            found[key.removeprefix("fake:connected:")] = holder
    return found


def _script(phone: str) -> dict[str, Any]:
    path = os.environ.get("FAKE_TELEGRAM_SCRIPT")
    if not path or not os.path.exists(path):
        return {}
    with open(path) as handle:
        return dict(json.load(handle).get(phone, {}))


_redis_client: Any = None


def _redis() -> Any:
    global _redis_client
    url = os.environ.get("FAKE_TELEGRAM_REDIS")
    if not url:
        return None
    if _redis_client is None:
        from redis import Redis

        _redis_client = Redis.from_url(url, decode_responses=True)
    return _redis_client


def session_for(phone: str) -> str:
    """A well-formed StringSession whose auth key belongs to `phone`."""
    key = hashlib.sha256(phone.encode()).digest() * 8
    return SessionData(2, "127.0.0.1", 443, key).to_string()


@dataclass
class FakeUser:
    id: int
    username: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    restricted: bool = False
    restriction_reason: list[Any] | None = None
    premium: bool = False
    deleted: bool = False


@dataclass
class FakeSentCode:
    phone_code_hash: str


class FakeSession:
    def __init__(self, value: str) -> None:
        self.value = value

    def save(self) -> str:
        return self.value


class FakeClient(AccountApiMixin, EventsMixin):
    """Matches the signatures of the `TelegramClient` methods the manager uses (a test checks it)."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.session = FakeSession(spec.session)
        self._connected = False
        self._disconnected: asyncio.Future[None] | None = None
        self._authorized = bool(spec.session)
        self._drop_task: asyncio.Task[None] | None = None
        self._needs_password = False

    @property
    def _key(self) -> str:
        return f"fake:connected:{self.spec.phone}"

    async def connect(self) -> None:
        script = _script(self.spec.phone)
        delay = float(script.get("delay", os.environ.get("FAKE_TELEGRAM_DELAY", "0")))
        if delay:
            await asyncio.sleep(delay)
        mode = str(script.get("connect", "ok"))
        redis = _redis()
        if redis is not None:
            device = self.spec.device
            redis.hset(DEVICES, self.spec.phone, device.model_dump_json() if device is not None else "null")
        if mode == "network":
            raise ConnectionRefusedError(111, "Connection refused (fake)")
        if self._authorized:
            if redis is not None:
                me = f"{os.getpid()}:{id(self)}"
                holder = _claim(redis, self._key, me, "")
                if holder != me and not holder_alive(holder):
                    holder = _claim(redis, self._key, me, holder)  # that process died: its connection with it
                if holder != me:
                    redis.rpush(VIOLATIONS, f"{self.spec.phone} connected from {me} while {holder} is")
                    raise errors.AuthKeyDuplicatedError(request=None)
        self._connected = True
        self._disconnected = asyncio.get_running_loop().create_future()
        if mode.startswith("drop:"):
            self._drop_task = asyncio.ensure_future(self._drop_after(float(mode.split(":", 1)[1])))

    async def _drop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._release()

    def _release(self) -> None:
        if self._connected:
            redis = _redis()
            if redis is not None and self._authorized:
                me = f"{os.getpid()}:{id(self)}"
                if redis.get(self._key) == me:
                    redis.delete(self._key)
        self._connected = False
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    async def is_user_authorized(self) -> bool:
        mode = str(_script(self.spec.phone).get("connect", "ok"))
        if mode == "unauthorized":
            return False
        return self._authorized

    async def get_me(self, input_peer: bool = False) -> FakeUser:
        mode = str(_script(self.spec.phone).get("connect", "ok"))
        if mode == "banned":
            raise errors.UserDeactivatedBanError(request=None)
        if mode == "duplicated":
            raise errors.AuthKeyDuplicatedError(request=None)
        if mode.startswith("flood:"):
            raise errors.FloodWaitError(request=None, capture=int(mode.split(":", 1)[1]))
        digits = self.spec.phone.lstrip("+")
        return FakeUser(id=int(digits[-9:]), phone=digits, **self._account_me())  # the account's profile

    def disconnect(self) -> Coroutine[Any, Any, None]:
        """Like Telethon's: a plain method returning a coroutine while the loop runs."""
        return self._disconnect()

    async def _disconnect(self) -> None:
        if self._drop_task is not None:
            self._drop_task.cancel()
        self._release()

    def is_connected(self) -> bool:
        return self._connected

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected is None:
            self._disconnected = asyncio.get_running_loop().create_future()
            self._disconnected.set_result(None)
        return self._disconnected

    async def send_code_request(self, phone: str, *, force_sms: bool = False, _retry_count: int = 0) -> FakeSentCode:
        script = _script(phone)
        if script.get("login", {}).get("invalid_phone"):
            raise errors.PhoneNumberInvalidError(request=None)
        return FakeSentCode(phone_code_hash="hash-" + phone[-4:])

    async def sign_in(
        self,
        phone: str | None = None,
        code: str | int | None = None,
        *,
        password: str | None = None,
        bot_token: str | None = None,
        phone_code_hash: str | None = None,
    ) -> FakeUser:
        login = _script(self.spec.phone).get("login", {})
        if password is not None:
            if password != login.get("password"):
                raise errors.PasswordHashInvalidError(request=None)
        else:
            if str(code) != str(login.get("code", "12345")):
                raise errors.PhoneCodeInvalidError(request=None)
            if login.get("password"):
                self._needs_password = True
                raise errors.SessionPasswordNeededError(request=None)
        self._authorized = True
        self.session = FakeSession(session_for(self.spec.phone))
        return await self.get_me()


def factory(spec: ClientSpec) -> FakeClient:
    return FakeClient(spec)
