"""The account operations themselves, on a connected, authorised Telethon client (or the tests' fake).

`perform(client, name, params)` runs one operation (`celery_app.operations.OperationName`: check, sessions,
terminate the others, 2FA, profile) and returns a small JSON-ready result; `worker.operator` decides where and
when it runs. Parameters come decrypted.

Errors follow `worker.operation_failures`: flood waits, network errors and anything not Telegram's propagate
unchanged; so does the account being gone, except in `check`, where it is the answer; every other refusal of
Telegram becomes `OperationFailed(code, detail)`, as do bad parameters.

Nothing here blocks the account's event loop (it is shared by many accounts): the 2FA password's key derivation
(PBKDF2, and a primality check of the server's prime when it is not Telegram's) runs in a thread.

Telethon is imported inside the functions: this module is imported lazily by `worker.operator`, and nothing
Telethon-specific is needed to import it.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from celery_app.contract import PHOTO_MAX_BYTES
from celery_app.operations import OperationName, describe_result, verdict_of
from common.details import Detail, detail
from common.redaction import safe_detail
from worker.clients import identity_of
from worker.failures import class_names
from worker.operation_failures import OperationFailed, failure_of, gone, passes_through, rpc

__all__ = [
    "SPAMBOT",
    "SPAMBOT_POLL",
    "SPAMBOT_TIMEOUT",
    "describe_result",
    "image_kind",
    "perform",
    "spam_status",
]

T = TypeVar("T")

SPAMBOT = "SpamBot"
SPAMBOT_TIMEOUT = 15.0  # seconds to wait for @SpamBot's answer
SPAMBOT_POLL = 0.5  # seconds between looks for it
SPAM_TEXT_MAX = 300
FRESH_RESET_SECONDS = 24 * 3600  # Telegram lets a session end the others only once it is this old


def _clean(text: Any, limit: int) -> str:
    """Telegram's own text (a bot's answer, a device name) on one line: no control or bidi characters, at most
    `limit` characters. Not `safe_detail`: that masks digit runs as phone numbers, and dates and versions
    ("29 May 2024, 12:43", "10.14.5 (49527)") are such runs; none of these texts holds the account's phone."""
    visible = "".join(" " if unicodedata.category(ch)[0] in ("C", "Z") else ch for ch in str(text or ""))
    cleaned = " ".join(visible.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


# --- check ------------------------------------------------------------------------------------------------

_FREE = (
    "no limits",
    "free as a bird",
    "not limited",
    "свободен от",
    "хорошие новости",
    "не наложены",
    "ограничений нет",
    "нет ограничений",
)
_LIMITED = ("limited", "annoying", "restricted", "ограничен", "заблокирован", "жалоб")


def spam_status(text: str) -> str:
    """@SpamBot's answer in a word: "free", "limited", or "unknown" (an answer not recognised)."""
    lowered = " ".join(text.replace("’", "'").lower().split())
    if not lowered:
        return "unknown"
    if any(phrase in lowered for phrase in _FREE):
        return "free"
    if any(phrase in lowered for phrase in _LIMITED):
        return "limited"
    return "unknown"


async def _ask_spambot(client: Any) -> tuple[str, str, Detail | None]:
    """Send /start to @SpamBot and wait for its answer: (status, text, None); ("unknown", "", why) when it
    cannot be asked (not found, refused) or does not answer in time."""
    try:
        sent = await rpc(client.send_message(SPAMBOT, "/start"))
    except ValueError:  # Telethon: the username resolves to nobody on this server
        return "unknown", "", detail("spambot_not_found")
    except OperationFailed as failure:  # SpamBot blocked, a peer flood, …
        return "unknown", "", detail("spambot_refused", cause=failure.detail)
    sent_id = int(getattr(sent, "id", 0) or 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SPAMBOT_TIMEOUT
    while True:
        try:
            messages = await rpc(client.get_messages(SPAMBOT, limit=1))
        except OperationFailed as failure:
            return "unknown", "", detail("spambot_refused", cause=failure.detail)
        for message in list(messages or []):
            if not getattr(message, "out", False) and int(getattr(message, "id", 0) or 0) > sent_id:
                text = str(getattr(message, "message", None) or "")
                return spam_status(text), _clean(text, SPAM_TEXT_MAX), None
        left = deadline - loop.time()
        if left <= 0:
            return "unknown", "", detail("spambot_silent", seconds=SPAMBOT_TIMEOUT)
        await asyncio.sleep(min(SPAMBOT_POLL, left))


def _restriction_text(user: Any) -> str | None:
    texts: list[str] = []
    for reason in getattr(user, "restriction_reason", None) or []:
        text = str(getattr(reason, "text", "") or getattr(reason, "reason", "") or "").strip()
        if text and text not in texts:
            texts.append(text)
    return _clean("; ".join(texts), 300) or None


async def _answer_or_gone(report: dict[str, Any], call: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run one step of `check`: (True, value), or (False, None) with `report` saying the account is gone."""
    try:
        return True, await call()
    except Exception as error:
        kind = gone(error)
        if kind is None:
            raise
        report["authorized"] = False
        report["banned"] = kind == "banned"
        return False, None


def _empty_report() -> dict[str, Any]:
    return {
        "authorized": False,
        "deleted": False,
        "banned": False,
        "restricted": False,
        "restriction": None,
        "spam": "unknown",
        "spam_text": "",
        "spam_reason": None,  # why the spam status is unknown, when it is (a coded detail, JSON)
        "premium": False,
        "other_sessions": None,
    }


def gone_report(error: BaseException) -> dict[str, Any] | None:
    """The `check` report of an account Telegram refused outright (banned, or its session revoked) — e.g. on
    connecting, where Telethon already asks who it is — or None when the error says nothing of the kind."""
    kind = gone(error)
    if kind is None:
        return None
    report = _empty_report()
    report["banned"] = kind == "banned"
    report["verdict"] = verdict_of(report).value
    return report


async def _check(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    from telethon.tl import functions

    report = _empty_report()

    def done() -> dict[str, Any]:
        report["verdict"] = verdict_of(report).value
        return report

    ok, authorized = await _answer_or_gone(report, lambda: rpc(client.is_user_authorized()))
    if not ok or not authorized:
        return done()
    ok, me = await _answer_or_gone(report, lambda: rpc(client.get_me()))
    if not ok:
        return done()
    if me is None:  # Telethon: not logged in
        return done()
    report["authorized"] = True
    report["deleted"] = bool(getattr(me, "deleted", False))
    report["restricted"] = bool(getattr(me, "restricted", False))
    report["restriction"] = _restriction_text(me) if report["restricted"] else None
    report["premium"] = bool(getattr(me, "premium", False))
    if report["deleted"]:
        return done()

    # The rest is best-effort: a refusal of one part leaves that part unknown, the report stands.
    async def authorizations() -> Any:
        return await client(functions.account.GetAuthorizationsRequest())

    try:
        ok, found = await _answer_or_gone(report, authorizations)
    except Exception as error:
        if passes_through(error):
            raise
        ok, found = True, None
    if not ok:
        return done()
    if found is not None:
        report["other_sessions"] = sum(1 for auth in found.authorizations if not getattr(auth, "current", False))

    ok, answer = await _answer_or_gone(report, lambda: _ask_spambot(client))
    if not ok or answer is None:
        return done()
    report["spam"], report["spam_text"], why = answer
    report["spam_reason"] = why.to_json() if why is not None else None
    return done()


# --- sessions -----------------------------------------------------------------------------------------------


def _epoch(value: Any) -> int | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp())
    if isinstance(value, int | float):
        return int(value)
    return None


def _text(value: Any) -> str:
    return _clean(value, 128)


def session_view(auth: Any) -> dict[str, Any]:
    """One authorisation for people: device, app, place (country and region: never the IP address)."""
    app = " ".join(part for part in (_text(auth.app_name), _text(auth.app_version)) if part)
    place = ", ".join(part for part in (_text(auth.country), _text(auth.region)) if part)
    return {
        "hash": str(auth.hash),
        "current": bool(getattr(auth, "current", False)),
        "device": _text(auth.device_model),
        "platform": _text(auth.platform),
        "system": _text(auth.system_version),
        "app": app,
        "place": place,
        "created": _epoch(getattr(auth, "date_created", None)),
        "last_active": _epoch(getattr(auth, "date_active", None)),
    }


async def _authorizations(client: Any) -> list[Any]:
    from telethon.tl import functions

    found = await rpc(client(functions.account.GetAuthorizationsRequest()))
    return list(found.authorizations)


async def _sessions(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    views = [session_view(auth) for auth in await _authorizations(client)]
    views.sort(key=lambda view: (not view["current"], -(view["last_active"] or 0)))
    return {"sessions": views}


def reset_possible_at(authorizations: list[Any]) -> int | None:
    """When the current session may end the others (epoch seconds): Telegram refuses it
    (FRESH_RESET_AUTHORISATION_FORBIDDEN) until the session is 24 hours old. None if the list does not say."""
    current = next((auth for auth in authorizations if getattr(auth, "current", False)), None)
    created = _epoch(getattr(current, "date_created", None)) if current is not None else None
    return created + FRESH_RESET_SECONDS if created else None


async def _terminate_others(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    from telethon.tl import functions

    authorizations = await _authorizations(client)
    others = [auth for auth in authorizations if not getattr(auth, "current", False)]
    if not others:
        return {"terminated": 0}
    possible_at = reset_possible_at(authorizations)
    if possible_at is not None and possible_at > time.time():  # refused before asking: say when it will do
        raise OperationFailed("session_too_fresh", detail("too_fresh_to_end_until", possible_at=possible_at))
    await rpc(client(functions.auth.ResetAuthorizationsRequest()))
    return {"terminated": len(others)}


# --- 2fa ------------------------------------------------------------------------------------------------------


async def _two_fa(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    from telethon.tl import functions

    current = params.get("current_password") or None
    new = params.get("new_password")
    hint = str(params.get("hint") or "")
    state = await rpc(client(functions.account.GetPasswordRequest()))
    has_password = bool(getattr(state, "has_password", False))
    if new is None:
        return {"has_password": has_password, "changed": False}
    if not isinstance(new, str) or not new:
        raise OperationFailed("password_invalid", detail("password_empty"))
    if hint and hint.strip() == new.strip():
        raise OperationFailed("hint_invalid", detail("hint_is_password"))
    if has_password and not current:
        raise OperationFailed("current_password_needed", detail("current_password_needed"))
    await _set_password(client, state, current if has_password else None, new, hint)
    return {"has_password": True, "changed": True}


def _derive(state: Any, current: str | None, new: str) -> tuple[Any, bytes]:
    """What Telethon's `edit_2fa` computes: the SRP proof of the current password (or the empty check) and the
    new password's verifier. PBKDF2 of 100,000 rounds each, and a primality check of the server's prime when
    it is not Telegram's own: up to seconds of CPU, so it runs in a thread, never on the event loop."""
    from telethon import password as srp
    from telethon.tl import types

    check = srp.compute_check(state, current) if current else types.InputCheckPasswordEmpty()
    return check, srp.compute_digest(state.new_algo, new)


async def _set_password(client: Any, state: Any, current: str | None, new: str, hint: str) -> None:
    """`client.edit_2fa(current, new, hint=hint)` of Telethon 1.45, on the `account.getPassword` answer already
    at hand, with the key derivation off the loop."""
    from telethon.tl import functions, types

    state.new_algo.salt1 += os.urandom(32)  # the client's part of the new salt, as Telethon adds it
    check, new_hash = await asyncio.get_running_loop().run_in_executor(None, _derive, state, current, new)
    settings = types.account.PasswordInputSettings(new_algo=state.new_algo, new_password_hash=new_hash, hint=hint)
    await rpc(client(functions.account.UpdatePasswordSettingsRequest(password=check, new_settings=settings)))


# --- profile ----------------------------------------------------------------------------------------------------


def image_kind(data: bytes) -> str | None:
    """ "jpeg" or "png" from the first bytes of an image; None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


_PROFILE_FIELDS = {"first_name": "first_name", "last_name": "last_name", "bio": "about"}


def _partly(failure: OperationFailed, changed: list[str], user: Any) -> OperationFailed:
    if not changed:
        return failure
    said = detail("partly_changed", cause=failure.detail, changed=", ".join(changed))
    return OperationFailed(failure.code, said, _profile_result(changed, user))


def _profile_result(changed: list[str], user: Any) -> dict[str, Any]:
    """What changed, and the account's names and username as Telegram answered the last change (`identity`:
    what the control plane shows of the account, kept current without a restart)."""
    from telethon.tl import types

    result: dict[str, Any] = {"changed": changed}
    if isinstance(user, types.User):
        who = identity_of(user)
        result["identity"] = {"name": who.name, "username": who.username}
    return result


async def _profile(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    from telethon.tl import functions

    texts = {key: params[key] for key in (*_PROFILE_FIELDS, "username") if params.get(key) is not None}
    for key, value in texts.items():
        if not isinstance(value, str):
            raise OperationFailed(f"{key}_invalid", detail("field_not_text", field=key.replace("_", " ")))
    photo = params.get("photo")
    kind = None
    if photo is not None:
        kind = image_kind(bytes(photo)) if isinstance(photo, bytes | bytearray) else None
        if kind is None:
            raise OperationFailed("photo_invalid", detail("photo_not_image"))
        if len(photo) > PHOTO_MAX_BYTES:
            raise OperationFailed("photo_invalid", detail("photo_too_big", mb=PHOTO_MAX_BYTES // (1024 * 1024)))
    if "first_name" in texts and not texts["first_name"].strip():
        raise OperationFailed("first_name_invalid", detail("first_name_empty"))

    # Before changing anything: a username that cannot be had fails the whole operation, nothing changed.
    username = texts.get("username")
    if username is not None:
        me = await rpc(client.get_me())
        if username == (getattr(me, "username", None) or ""):
            username = None  # already the account's
        elif username and username.lower() != str(getattr(me, "username", None) or "").lower():
            available = await rpc(client(functions.account.CheckUsernameRequest(username)), username)
            if not available:
                raise OperationFailed("username_taken", detail("username_taken", username=username))

    changed: list[str] = []
    user: Any = None  # the account as Telegram answered the last change of its names or username
    names = {field: texts[key] for key, field in _PROFILE_FIELDS.items() if key in texts}
    if names:
        user = await rpc(client(functions.account.UpdateProfileRequest(**names)))
        changed.extend(key for key in _PROFILE_FIELDS if key in texts)
    if username is not None:
        try:
            user = await client(functions.account.UpdateUsernameRequest(username))
        except Exception as error:
            if "UsernameNotModifiedError" in class_names(error):
                pass  # it already was the account's: no change, no failure
            elif passes_through(error):
                raise
            else:
                raise _partly(failure_of(error, username), changed, user) from None
        else:
            changed.append("username")
    if photo is not None:
        file_name = "photo.jpg" if kind == "jpeg" else "photo.png"
        try:
            uploaded = await rpc(client.upload_file(bytes(photo), file_name=file_name))
            await rpc(client(functions.photos.UploadProfilePhotoRequest(file=uploaded)))
        except OperationFailed as failure:
            raise _partly(failure, changed, user) from None
        changed.append("photo")
    return _profile_result(changed, user)


# --- dispatch ---------------------------------------------------------------------------------------------------

_OPERATIONS: dict[OperationName, Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    OperationName.CHECK: _check,
    OperationName.SESSIONS: _sessions,
    OperationName.TERMINATE_OTHERS: _terminate_others,
    OperationName.TWO_FA: _two_fa,
    OperationName.PROFILE: _profile,
}


async def perform(client: Any, name: OperationName | str, params: dict[str, Any]) -> dict[str, Any]:
    """Run operation `name` on a connected, authorised client; its result (JSON-ready, nothing secret).

    Raises `OperationFailed` for a clear failure; flood waits, the account being gone (outside `check`),
    network and other errors propagate unchanged.
    """
    try:
        operation = OperationName(name)
    except ValueError:
        raise OperationFailed(
            "unknown_operation", detail("unknown_operation", name=safe_detail(str(name), 40))
        ) from None
    return await _OPERATIONS[operation](client, dict(params or {}))
