"""Logging in on the worker: a login keeps the client that requested the code alive (the code must be signed
in with the same session) until it completes, is cancelled, or expires after `LOGIN_TTL` seconds; Telegram's
refusals become coded outcomes (`login_failure`)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from celery_app.account_state import AccountStatus
from worker.clients import ClientSpec, Identity, TelegramClientLike
from worker.failures import class_names, classify
from worker.loops import LoopThread

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
