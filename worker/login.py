"""Logging in on the worker: a login keeps the client that requested the code alive (the code must be signed
in with the same session) until it completes, is cancelled, or expires after `LOGIN_TTL` seconds; Telegram's
refusals become coded outcomes (`login_failure`).

`LoginMethods` is the login half of `worker.account_manager.AccountManager` (mixed into it, the way Telethon
composes its client from one class per concern): `send_code`, `submit_code`, `submit_password`,
`cancel_login`, `expire_logins`, `new_login_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from celery_app.account_state import AccountStatus
from worker import clients
from worker.clients import ClientFactory, ClientSpec, Identity, TelegramClientLike, identity_of
from worker.failures import class_names, classify
from worker.loops import LoopThread
from worker.pacing import ConnectPacer

log = logging.getLogger(__name__)

LOGIN_TTL = 300.0


# --- logins -----------------------------------------------------------------------------------------------


@dataclass
class PendingLogin:
    login_id: str
    spec: ClientSpec
    loop_thread: LoopThread
    client: TelegramClientLike
    phone_code_hash: str = ""
    needs_password: bool = False
    expires_at: float = field(default_factory=lambda: time.monotonic() + LOGIN_TTL)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class LoginOutcome:
    state: str  # code_sent | password_needed | authorized | failed
    error: str | None = None
    message: str = ""
    retry: bool = False
    session: str | None = None
    identity: Identity | None = None
    wait_seconds: int | None = None


_LOGIN_ERRORS: dict[str, tuple[str, str, bool]] = {
    # exception name: (error code, message, can retry within the same login)
    "PhoneNumberInvalidError": ("invalid_phone", "Telegram does not accept this phone number", False),
    "PhoneNumberUnoccupiedError": ("invalid_phone", "no Telegram account uses this phone number", False),
    "PhoneNumberBannedError": ("banned", "this phone number is banned by Telegram", False),
    "PhoneCodeInvalidError": ("invalid_code", "the code is wrong; type it again, with spaces like 1 2 3 4 5", True),
    "PhoneCodeEmptyError": ("invalid_code", "the code is empty; type it with spaces like 1 2 3 4 5", True),
    "PhoneCodeExpiredError": (
        "code_expired",
        "the code has expired (or was sent through Telegram as is); request a new one",
        False,
    ),
    "PasswordHashInvalidError": ("wrong_password", "the 2FA password is wrong; try again", True),
    "ApiIdInvalidError": ("api_id_invalid", "Telegram rejects this API ID / API hash pair", False),
    "ApiIdPublishedFloodError": (
        "api_id_invalid",
        "this API ID is published and blocked by Telegram; use your own",
        False,
    ),
}


def login_failure(error: BaseException) -> LoginOutcome:
    names = class_names(error)
    for name, (code, message, retry) in _LOGIN_ERRORS.items():
        if name in names:
            return LoginOutcome("failed", code, message, retry)
    outcome = classify(error)
    if outcome.status is AccountStatus.FLOOD_WAIT:
        seconds = int(outcome.wait_seconds or 0)
        return LoginOutcome(
            "failed",
            "flood_wait",
            f"Telegram asks to wait {seconds} s before trying again",
            False,
            wait_seconds=seconds,
        )
    if outcome.status is AccountStatus.BANNED:
        return LoginOutcome("failed", "banned", outcome.detail.text, False)
    if outcome.detail.code == "network":
        return LoginOutcome("failed", "network", f"cannot reach Telegram: {outcome.detail.text}", False)
    return LoginOutcome("failed", "error", outcome.detail.text, False)


# --- the login flow, on the account manager ---------------------------------------------------------------


class LoginMethods:
    """Logins, as `AccountManager` runs them: each on a loop of the manager's, its connect paced with the
    others, its client kept in `logins` until it completes, is cancelled or expires."""

    factory: ClientFactory
    pacer: ConnectPacer
    logins: dict[str, PendingLogin]
    _lock: threading.RLock

    def _least_loaded_loop(self) -> LoopThread:
        raise NotImplementedError  # the account manager's

    def _login(self, login_id: str) -> PendingLogin | None:
        with self._lock:
            login = self.logins.get(login_id)
            if login is not None and time.monotonic() > login.expires_at:
                self.logins.pop(login_id, None)
                login.loop_thread.submit(self._close_client(login.client))
                return None
            return login

    async def _close_client(self, client: TelegramClientLike) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), clients.DISCONNECT_TIMEOUT)

    def expire_logins(self) -> None:
        with self._lock:
            expired = [login_id for login_id, login in self.logins.items() if time.monotonic() > login.expires_at]
        for login_id in expired:
            self._login(login_id)

    def send_code(self, login_id: str, spec: ClientSpec) -> LoginOutcome:
        self.expire_logins()
        loop_thread = self._least_loaded_loop()

        # An admin is waiting: a login goes ahead of the queue, but its connect counts in the worker's pace.
        self.pacer.take_turn_now()

        async def begin() -> LoginOutcome:
            client = self.factory(spec)
            try:
                await asyncio.wait_for(client.connect(), clients.CONNECT_TIMEOUT)
                sent = await asyncio.wait_for(client.send_code_request(spec.phone), clients.CALL_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - classified for the admin
                await self._close_client(client)
                return login_failure(error)
            with self._lock:
                self.logins[login_id] = PendingLogin(
                    login_id, spec, loop_thread, client, str(getattr(sent, "phone_code_hash", "") or "")
                )
            return LoginOutcome("code_sent", message="code sent")

        return loop_thread.call(begin(), clients.CONNECT_TIMEOUT + clients.CALL_TIMEOUT + 5)

    def _finish(self, login: PendingLogin, attempt: Callable[[], Awaitable[Any]]) -> LoginOutcome:
        async def run() -> LoginOutcome:
            try:
                await asyncio.wait_for(attempt(), clients.CALL_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - classified for the admin
                if "SessionPasswordNeededError" in class_names(error):
                    login.needs_password = True
                    return LoginOutcome(
                        "password_needed", message="this account has two-step verification: send the password"
                    )
                outcome = login_failure(error)
                if not outcome.retry:
                    self._drop_login(login)
                    await self._close_client(login.client)
                return outcome
            try:
                me = identity_of(await asyncio.wait_for(login.client.get_me(), clients.CALL_TIMEOUT))
                session = str(login.client.session.save())  # type: ignore[attr-defined]
            except Exception as error:  # noqa: BLE001
                self._drop_login(login)
                await self._close_client(login.client)
                return login_failure(error)
            self._drop_login(login)
            await self._close_client(login.client)
            return LoginOutcome("authorized", message="logged in", session=session, identity=me)

        return login.loop_thread.call(run(), clients.CALL_TIMEOUT * 2 + 5)

    def _drop_login(self, login: PendingLogin) -> None:
        with self._lock:
            if self.logins.get(login.login_id) is login:
                del self.logins[login.login_id]

    def submit_code(self, login_id: str, code: str) -> LoginOutcome:
        login = self._login(login_id)
        if login is None:
            return LoginOutcome("failed", "unknown_login", "this login has expired or was cancelled; start again")
        with login.lock:
            if login.needs_password:
                return LoginOutcome("password_needed", message="send the two-step verification password")
            return self._finish(
                login,
                lambda: login.client.sign_in(phone=login.spec.phone, code=code, phone_code_hash=login.phone_code_hash),
            )

    def submit_password(self, login_id: str, password: str) -> LoginOutcome:
        login = self._login(login_id)
        if login is None:
            return LoginOutcome("failed", "unknown_login", "this login has expired or was cancelled; start again")
        with login.lock:
            if not login.needs_password:
                return LoginOutcome(
                    "failed", "unexpected_password", "no password was asked for: send the code first", True
                )
            return self._finish(login, lambda: login.client.sign_in(password=password))

    def cancel_login(self, login_id: str) -> bool:
        with self._lock:
            login = self.logins.pop(login_id, None)
        if login is None:
            return False
        with contextlib.suppress(Exception):
            login.loop_thread.call(self._close_client(login.client), clients.DISCONNECT_TIMEOUT + 1)
        return True

    @staticmethod
    def new_login_id() -> str:
        return uuid.uuid4().hex
