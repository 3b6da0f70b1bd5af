"""How Telegram's errors become an operation's outcome (`worker.operations` runs the operations).

- Telegram's flood waits (`FloodWaitError`, `SlowModeWaitError`, any 420: `is_flood`) and errors that mean
  the account itself is gone (banned, deactivated, revoked session: `gone`) pass through unchanged: the caller
  handles them. So do network errors and anything that is not a Telegram error (`passes_through`).
- Every other Telegram error becomes `OperationFailed(code, detail)` (`failure_of`): a stable code for
  machines and a coded detail (`common.details`) whose English text never holds a phone number, a session,
  a password or raw protocol bytes. `_FAILURES` maps Telethon's error classes to them; an error not in it is
  named by Telegram's own name (`USERNAME_OCCUPIED`).
- `rpc(call)` awaits one call to Telegram under these rules.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from common.details import Detail, detail, fitted
from worker.failures import BANNED, UNAUTHORIZED, class_names

T = TypeVar("T")


class OperationFailed(Exception):
    """A clear failure of an operation (Telegram's refusal or bad input); nothing was changed by it unless the
    detail says so. `code` is stable for machines (tests, `--json`), `detail` is what people read (coded);
    `result` is what the operation still reports (what it changed before it failed), if anything."""

    def __init__(self, code: str, said: Detail, result: dict[str, Any] | None = None) -> None:
        super().__init__(said.text)
        self.code = code
        self.detail = said
        self.result = result

    @property
    def message(self) -> str:
        return self.detail.text

    def __repr__(self) -> str:
        return f"OperationFailed({self.code!r}, {self.message!r})"


_FLOOD = frozenset({"FloodError", "FloodWaitError", "FloodPremiumWaitError", "SlowModeWaitError"})
_GONE_BANNED = frozenset(BANNED)
_GONE_UNAUTHORIZED = frozenset(UNAUTHORIZED) | {"AuthKeyDuplicatedError"}

# Telethon's error class name -> (code, detail code); the detail may use `username` and `when`.
_FAILURES: dict[str, tuple[str, str]] = {
    "UsernameOccupiedError": ("username_taken", "username_taken"),
    "UsernamePurchaseAvailableError": ("username_taken", "username_for_sale"),
    "UsernameInvalidError": ("username_invalid", "username_invalid"),
    "FirstNameInvalidError": ("first_name_invalid", "first_name_refused"),
    "FirstnameInvalidError": ("first_name_invalid", "first_name_refused"),
    "LastNameInvalidError": ("last_name_invalid", "last_name_refused"),
    "AboutTooLongError": ("bio_too_long", "bio_too_long"),
    "PhotoInvalidDimensionsError": ("photo_invalid", "photo_dimensions"),
    "PhotoCropSizeSmallError": ("photo_invalid", "photo_too_small"),
    "ImageProcessFailedError": ("photo_invalid", "photo_unprocessable"),
    "PhotoExtInvalidError": ("photo_invalid", "photo_format"),
    "PhotoInvalidError": ("photo_invalid", "photo_refused"),
    "PhotoFileMissingError": ("photo_invalid", "photo_lost"),
    "PhotoSaveFileInvalidError": ("photo_invalid", "photo_damaged"),
    "FilePartsInvalidError": ("photo_invalid", "photo_damaged"),
    "FilePartInvalidError": ("photo_invalid", "photo_damaged"),
    "PasswordHashInvalidError": ("wrong_password", "wrong_password"),
    "PasswordTooFreshError": ("password_too_fresh", "password_too_fresh"),
    "SessionTooFreshError": ("session_too_fresh", "session_too_fresh"),
    "FreshResetAuthorisationForbiddenError": ("session_too_fresh", "too_fresh_to_end"),
    "NewSaltInvalidError": ("password_change_refused", "password_change_refused"),
    "NewSettingsInvalidError": ("password_change_refused", "password_change_refused"),
    "SrpIdInvalidError": ("password_change_refused", "password_settings_changed"),
    "SrpPasswordChangedError": ("password_change_refused", "password_changed_meanwhile"),
    "EmailUnconfirmedError": ("password_change_refused", "recovery_email_unconfirmed"),
    "PasswordRequiredError": ("password_needed", "password_needed"),
    "HashInvalidError": ("session_not_found", "session_not_found"),
}

_error_names: dict[type, str] | None = None


def _telegram_name(error: BaseException) -> str:
    """Telegram's own name for an error (`USERNAME_OCCUPIED`), or "" if it has none."""
    global _error_names
    if _error_names is None:
        try:
            from telethon.errors import rpcerrorlist
        except ImportError:  # pragma: no cover - Telethon is a dependency
            _error_names = {}
        else:
            names = {cls: name for name, cls in rpcerrorlist.rpc_errors_dict.items()}
            for pattern, cls in rpcerrorlist.rpc_errors_re:
                names.setdefault(cls, re.sub(r"_?\(.*$", "", getattr(pattern, "pattern", str(pattern))))
            _error_names = names
    name = _error_names.get(type(error))
    if name:
        return name
    message = getattr(error, "message", None)
    if isinstance(message, str) and re.fullmatch(r"[A-Z][A-Z0-9_]{2,63}", message):
        return message
    return ""


def _is_telegram_error(error: BaseException) -> bool:
    return "RPCError" in class_names(error)


def is_flood(error: BaseException) -> bool:
    """A wait Telegram asks for (FLOOD_WAIT, SLOWMODE_WAIT, …): the caller waits and runs the work again."""
    return bool(_FLOOD.intersection(class_names(error))) or (
        _is_telegram_error(error) and getattr(error, "code", None) == 420
    )


def gone(error: BaseException) -> str | None:
    """ "banned" or "unauthorized" when the error means the account itself is gone; else None."""
    names = class_names(error)
    if _GONE_BANNED.intersection(names):
        return "banned"
    if _GONE_UNAUTHORIZED.intersection(names):
        return "unauthorized"
    return None


def passes_through(error: BaseException) -> bool:
    """Errors the caller handles itself: not Telegram's, flood waits, and the account being gone."""
    return not _is_telegram_error(error) or is_flood(error) or gone(error) is not None


def _when(error: BaseException) -> Detail:
    """When Telegram lets one try again, as the error says (in seconds), or later."""
    seconds = getattr(error, "seconds", None)
    if not isinstance(seconds, int) or seconds <= 0:
        return detail("later")
    if seconds < 120:
        return detail("in_seconds", seconds=seconds)
    if seconds < 2 * 3600:
        return detail("in_minutes", minutes=round(seconds / 60))
    return detail("in_hours", hours=round(seconds / 3600))


def failure_of(error: BaseException, username: str = "") -> OperationFailed:
    """The `OperationFailed` a Telegram error becomes."""
    for name in class_names(error):
        if name in _FAILURES:
            code, said = _FAILURES[name]
            return OperationFailed(code, fitted(said, username=username, when=_when(error)))
    telegram = _telegram_name(error)
    if telegram:
        return OperationFailed(telegram.lower(), detail("telegram_refused", name=telegram))
    return OperationFailed("telegram_error", detail("telegram_refused_plain"))


async def rpc(call: Awaitable[T], username: str = "") -> T:
    """Await one call to Telegram; its refusals become `OperationFailed`, the rest propagate unchanged."""
    try:
        return await call
    except Exception as error:
        if passes_through(error):
            raise
        raise failure_of(error, username) from None
