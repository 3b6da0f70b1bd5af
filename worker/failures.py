"""What went wrong, in the statuses and details an admin sees: a Telethon, network or any other error mapped
to a status and a coded detail (`classify`), and how long to wait before trying again (`backoff_delay`,
`flood_delay`). Never the raw text of a protocol error: it may hold bytes or a phone number."""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass

from celery_app.account_state import AccountStatus
from common.details import Detail, detail, free
from common.redaction import safe_detail
from worker.pacing import jittered

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
MAX_FLOOD_JITTER = 60.0


# --- error classification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: AccountStatus
    detail: Detail
    terminal: bool  # stop the runner (an admin must act)
    wait_seconds: float | None = None  # flood wait


UNAUTHORIZED = {
    "AuthKeyUnregisteredError": "auth_key_unregistered",
    "SessionRevokedError": "session_revoked",
    "SessionExpiredError": "session_expired",
    "AuthKeyInvalidError": "auth_key_invalid",
    "UnauthorizedError": "not_authorized",
}
BANNED = {
    "UserDeactivatedBanError": "user_banned",
    "UserDeactivatedError": "user_deactivated",
    "PhoneNumberBannedError": "phone_banned",
}
_NETWORK = ("ConnectionError", "OSError", "TimeoutError", "InvalidBufferError", "IncompleteReadError", "ServerError")
_PLAIN_CAUSES = {
    "IncompleteReadError": "closed",
    "InvalidBufferError": "invalid_packet",
    "ConnectionResetError": "reset",
    "ConnectionAbortedError": "aborted",
    "ConnectionRefusedError": "refused",
    "BrokenPipeError": "broken",
    "TimeoutError": "timed_out",
    "InvalidChecksumError": "checksum",
    "SecurityError": "security",
    "AuthKeyNotFound": "unknown_key",
}


def class_names(error: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(error).__mro__]


def describe_error(error: BaseException) -> Detail:
    """A short description, coded where we know the error: never the raw text of a protocol error (it may hold
    bytes, a phone)."""
    names = class_names(error)
    if "TypeNotFoundError" in names:
        return detail("unknown_constructor")
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if isinstance(code, int) and isinstance(message, str):  # Telegram's RPC errors: a code and an error name
        token = re.match(r"[A-Z][A-Z0-9_]*", message)
        return detail("telegram_error", code=code, name=f" {token.group(0)}" if token else "")
    for name in names:
        if name in _PLAIN_CAUSES:
            return detail(_PLAIN_CAUSES[name])
    number = getattr(error, "errno", None)
    if isinstance(error, OSError) and isinstance(number, int) and number > 0:
        return free(os.strerror(number).lower())
    text = safe_detail(str(error), 120)
    return free(f"{type(error).__name__}: {text}" if text and type(error).__name__ not in text else text or names[0])


def classify(error: BaseException) -> Outcome:
    """Map an exception (Telethon's, the network's, anything) to the status an admin should see."""
    names = class_names(error)
    # Most specific first: Telethon's ban errors are also UnauthorizedErrors (HTTP 401).
    for name, code in BANNED.items():
        if name in names:
            return Outcome(AccountStatus.BANNED, detail(code), terminal=True)
    if "AuthKeyDuplicatedError" in names:
        return Outcome(AccountStatus.UNAUTHORIZED, detail("auth_key_duplicated"), terminal=True)
    for name, code in UNAUTHORIZED.items():
        if name in names:
            return Outcome(AccountStatus.UNAUTHORIZED, detail(code), terminal=True)
    if "FloodWaitError" in names or "FloodPremiumWaitError" in names:
        seconds = float(getattr(error, "seconds", 0) or 0)
        return Outcome(AccountStatus.FLOOD_WAIT, detail("flood", seconds=seconds), terminal=False, wait_seconds=seconds)
    if any(name in names for name in _NETWORK):
        return Outcome(AccountStatus.ERROR, detail("network", cause=describe_error(error)), terminal=False)
    return Outcome(AccountStatus.ERROR, describe_error(error), terminal=False)


def backoff_delay(attempt: int) -> float:
    """Seconds before reconnect attempt `attempt`: doubling up to MAX_BACKOFF, with jitter so that many
    clients dropped at once do not all dial again at the same moment."""
    return jittered(float(min(MAX_BACKOFF, 2 ** min(attempt, 9))))


def flood_delay(seconds: float) -> float:
    """Seconds to wait out a flood wait: never less than Telegram asked, plus a little at random, so that the
    accounts a flood stopped together do not all come back in the same second."""
    return seconds + random.uniform(0.0, min(MAX_FLOOD_JITTER, max(1.0, seconds * 0.1)))
