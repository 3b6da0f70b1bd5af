"""The fake Telegram's account API: the requests account operations send (see `fake_telegram`).

`AccountApiMixin` gives `FakeClient` what Telethon's client offers for them, answering like Telegram does:
`client(request)` for Telethon's real request classes (GetAuthorizationsRequest, ResetAuthorizationsRequest,
ResetAuthorizationRequest, GetPasswordRequest, UpdateProfileRequest, CheckUsernameRequest,
UpdateUsernameRequest, UploadProfilePhotoRequest), `edit_2fa`, `upload_file`, and `send_message` /
`get_messages` with @SpamBot. Answers are Telethon's own TL types; refusals are Telethon's own error classes.

The account's Telegram-side state lives in the fake's Redis as JSON under `fake:account:{phone}` when
FAKE_TELEGRAM_REDIS is set (so it is shared by every client and process), else in this process. It starts,
at its first change, from the `account` entry of the phone's script (FAKE_TELEGRAM_SCRIPT); once stored, the
stored state wins over the script. Every key is optional:

    {"+15550000001": {"account": {
        "sessions": 3,                 # other authorisations besides the fleet's own (default 0), or a list of
                                       # {"device_model", "platform", "system_version", "app_name", "app_version",
                                       #  "country", "region", "ip", "api_id", "date_created", "date_active"}
        "password": "old",             # the 2FA password (default: none); "hint": "its hint"
        "first_name": "Ann", "last_name": "Lee", "bio": "…", "username": "ann_lee",
                                       # default: "Test", the phone's last 4 digits, "", "user" + last 4 digits
        "photos": 0,                   # profile photos already set
        "spam": "free",                # @SpamBot's answer: "free" (default), "limited", "free_ru", "limited_ru",
                                       # "silent" (it never answers), or any other text (answered as it is)
        "spam_delay": 0.0,             # seconds before @SpamBot's answer arrives
        "restricted": "reason text",   # get_me() says restricted, with this text as the restriction reason
        "premium": true, "deleted": true,
        "taken": ["someone"],          # usernames other accounts hold (USERNAME_OCCUPIED)
        "fresh": true,                 # the fleet's session is too new to end others (FRESH_RESET_…_FORBIDDEN)
        "flood": {"op_calls": 2, "seconds": 3}  # the next 2 account-API calls raise FloodWaitError(3)
    }}}

The account-API calls (what `flood` counts) are `client(request)`, `edit_2fa`, `upload_file` and
`send_message`; `get_messages` only reads. The phone's `connect` mode counts too: "banned" makes every account
call raise USER_DEACTIVATED_BAN, "unauthorized" AUTH_KEY_UNREGISTERED; a client that is not connected gets
ConnectionError, as Telethon's does.

What Telegram saw is in the stored state, for tests (`account_state(phone)`): the profile fields, `photos`,
`password`/`hint`, `sessions` (the other authorisations that remain), `flood_calls` (how many flood answers
are left), and `log`, the names of the last calls that reached it (`UpdateProfileRequest`, `edit_2fa`, …).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import io
import json
import re
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

STATE_PREFIX = "fake:account:"
SPAMBOT_ID = 178220800
PHOTO_MIN_SIDE = 160  # Telegram refuses smaller profile photos (PHOTO_CROP_SIZE_SMALL)
LOG_LENGTH = 50
_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,30}[A-Za-z0-9]$")

SPAM_ANSWERS = {
    "free": "Good news, no limits are currently applied to your account. You’re free as a bird!",
    "limited": (
        "I’m afraid some Telegram users found your messages annoying and forwarded them to our team of "
        "moderators for inspection. The moderators have confirmed the report and your account is now limited "
        "until 1 Jan 2030, 12:00 UTC.\n\nWhile the account is limited, you will not be able to send messages to "
        "people who do not have your number in their phone contacts or add them to groups and channels."
    ),
    "free_ru": "Хорошие новости: Ваш аккаунт свободен от каких-либо ограничений.",
    "limited_ru": (
        "К сожалению, некоторые пользователи пожаловались на Ваши сообщения. Ваш аккаунт ограничен до "
        "1 января 2030 года."
    ),
}

_OTHER_DEVICES = [
    ("Pixel 7", "Android", "SDK 34", "Telegram Android", "10.14.5", "Germany", "Berlin"),
    ("iPhone 15 Pro", "iOS", "17.5.1", "Telegram iOS", "10.13.1", "Netherlands", "North Holland"),
    ("Desktop", "Windows", "Windows 11", "Telegram Desktop", "5.2.3 x64", "France", "Ile-de-France"),
    ("Chrome 126", "Web", "Linux", "Telegram Web A", "10.9.7 A", "Spain", "Madrid"),
]

_local: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def _key(phone: str) -> str:
    return f"{STATE_PREFIX}{phone}"


def _session_entry(phone: str, index: int, given: dict[str, Any] | None = None) -> dict[str, Any]:
    device, platform, system, app, version, country, region = _OTHER_DEVICES[index % len(_OTHER_DEVICES)]
    digest = hashlib.sha256(f"{phone}:{index}".encode()).digest()
    entry = {
        "hash": struct.unpack(">q", digest[:8])[0] or 1,
        "device_model": device,
        "platform": platform,
        "system_version": system,
        "app_name": app,
        "app_version": version,
        "api_id": 4 + index,
        "ip": f"198.51.100.{10 + index}",
        "country": country,
        "region": region,
        "date_created": 1_700_000_000 + index * 86_400,
        "date_active": 1_710_000_000 + index * 3_600,
    }
    entry.update(given or {})
    return entry


def initial_state(phone: str) -> dict[str, Any]:
    """The account as the phone's script describes it (see the module's docstring)."""
    from tests.support.fake_telegram import _script

    account = dict(_script(phone).get("account") or {})
    digits = phone.lstrip("+")
    sessions = account.get("sessions", 0)
    if isinstance(sessions, list):
        others = [_session_entry(phone, index, dict(given)) for index, given in enumerate(sessions)]
    else:
        others = [_session_entry(phone, index) for index in range(int(sessions))]
    flood = dict(account.get("flood") or {})
    return {
        "sessions": others,
        "password": account.get("password") or None,
        "hint": str(account.get("hint", "")),
        "first_name": str(account.get("first_name", "Test")),
        "last_name": str(account.get("last_name", digits[-4:])),
        "bio": str(account.get("bio", "")),
        "username": str(account.get("username", f"user{digits[-4:]}")),
        "photos": int(account.get("photos", 0)),
        "spam": str(account.get("spam", "free")),
        "spam_delay": float(account.get("spam_delay", 0.0)),
        "restricted": account.get("restricted") or None,
        "premium": bool(account.get("premium", False)),
        "deleted": bool(account.get("deleted", False)),
        "taken": [str(name) for name in account.get("taken", [])],
        "fresh": bool(account.get("fresh", False)),
        "flood_calls": int(flood.get("op_calls", 0)),
        "flood_seconds": int(flood.get("seconds", 0)),
        "spambot": [],  # the chat with @SpamBot: [{"id", "out", "text", "at"}], the last few
        "last_message_id": 0,
        "log": [],
    }


def account_state(phone: str) -> dict[str, Any]:
    """The account's Telegram-side state now (a copy): stored, or as the script describes it."""
    from tests.support.fake_telegram import _redis

    redis = _redis()
    if redis is not None:
        raw = redis.get(_key(phone))
        return json.loads(raw) if raw else initial_state(phone)
    with _lock:
        stored = _local.get(phone)
        return copy.deepcopy(stored) if stored is not None else initial_state(phone)


def reset_accounts() -> None:
    """Forget every account's state kept in this process (tests without the fake's Redis)."""
    with _lock:
        _local.clear()


def update_state(phone: str, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `change` to the account's state atomically (across processes with Redis) and store it."""
    from tests.support.fake_telegram import _redis

    redis = _redis()
    if redis is None:
        with _lock:
            state = copy.deepcopy(_local[phone]) if phone in _local else initial_state(phone)
            result = change(state)
            _local[phone] = state
            return result
    outcome: dict[str, Any] = {}

    def attempt(pipe: Any) -> None:
        raw = pipe.get(_key(phone))
        state = json.loads(raw) if raw else initial_state(phone)
        outcome["result"] = change(state)
        pipe.multi()
        pipe.set(_key(phone), json.dumps(state))

    redis.transaction(attempt, _key(phone))
    return outcome["result"]


def _date(epoch: Any) -> datetime.datetime | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)


def _image_info(data: bytes) -> dict[str, Any]:
    """What Telegram's image processing would find: the kind, and a PNG's size."""
    if data[:3] == b"\xff\xd8\xff":
        return {"kind": "jpeg", "width": None, "height": None}
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return {"kind": "png", "width": width, "height": height}
    return {"kind": None, "width": None, "height": None}


def _spambot(entity: Any) -> bool:
    return isinstance(entity, str) and entity.lstrip("@").lower() == "spambot"


def _log(state: dict[str, Any], name: str) -> None:
    state["log"] = [*state.get("log", []), name][-LOG_LENGTH:]


class AccountApiMixin:
    """Mixed into `FakeClient` (which has `spec`, `_connected` and `_authorized`)."""

    spec: Any
    _connected: bool
    _authorized: bool

    # --- the state, and what every call goes through

    @property
    def _phone(self) -> str:
        return str(self.spec.phone)

    def _refusal(self) -> BaseException | None:
        """What Telegram (or Telethon) answers any account call with before looking at it, if anything."""
        from telethon import errors

        from tests.support.fake_telegram import _script

        if not getattr(self, "_connected", False):
            return ConnectionError("Cannot send requests while disconnected")
        mode = str(_script(self._phone).get("connect", "ok"))
        if mode == "banned":
            return errors.UserDeactivatedBanError(request=None)
        if mode == "unauthorized" or not getattr(self, "_authorized", False):
            return errors.AuthKeyUnregisteredError(request=None)
        return None

    async def _account_call(self, name: str, handle: Callable[[dict[str, Any]], Any]) -> Any:
        """One call reaching Telegram: refused, flood-waited, or handled on the stored state (logged)."""
        from telethon import errors

        refusal = self._refusal()
        if refusal is not None:
            raise refusal

        def change(state: dict[str, Any]) -> Any:
            if state.get("flood_calls", 0) > 0:
                state["flood_calls"] -= 1
                return errors.FloodWaitError(request=None, capture=int(state.get("flood_seconds", 0)))
            _log(state, name)
            try:
                return handle(state)
            except Exception as error:  # noqa: BLE001 - raised after the state is stored
                return error

        result = update_state(self._phone, change)
        if isinstance(result, BaseException):
            raise result
        return result

    def _account_me(self) -> dict[str, Any]:
        """The profile `get_me()` reports (FakeUser's fields but `id` and `phone`)."""
        from telethon.tl import types

        state = account_state(self._phone)
        restriction = state.get("restricted")
        return {
            "username": state["username"] or None,
            "first_name": state["first_name"],
            "last_name": state["last_name"] or None,
            "restricted": bool(restriction),
            "restriction_reason": [types.RestrictionReason(platform="all", reason="spam", text=str(restriction))]
            if restriction
            else None,
            "premium": bool(state.get("premium")),
            "deleted": bool(state.get("deleted")),
        }

    def _user(self, state: dict[str, Any]) -> Any:
        from telethon.tl import types

        digits = self._phone.lstrip("+")
        return types.User(
            id=int(digits[-9:]),
            is_self=True,
            first_name=state["first_name"],
            last_name=state["last_name"] or None,
            username=state["username"] or None,
            phone=digits,
            premium=bool(state.get("premium")),
        )

    # --- requests

    def _current_authorization(self) -> Any:
        from telethon.tl import types

        device = getattr(self.spec, "device", None)
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        return types.Authorization(
            hash=0,
            device_model=device.device_model if device is not None else "Fleet worker",
            platform="",
            system_version=device.system_version if device is not None else "",
            api_id=int(self.spec.api_id),
            app_name="Fleet",
            app_version=device.app_version if device is not None else "",
            date_created=now - datetime.timedelta(days=30),
            date_active=now,
            ip="127.0.0.1",
            country="",
            region="",
            current=True,
        )

    def _handle(self, request: Any, state: dict[str, Any]) -> Any:
        from telethon import errors
        from telethon.tl import functions, types

        if isinstance(request, functions.account.GetAuthorizationsRequest):
            others = [
                types.Authorization(
                    hash=int(entry["hash"]),
                    device_model=entry["device_model"],
                    platform=entry["platform"],
                    system_version=entry["system_version"],
                    api_id=int(entry["api_id"]),
                    app_name=entry["app_name"],
                    app_version=entry["app_version"],
                    date_created=_date(entry["date_created"]),
                    date_active=_date(entry["date_active"]),
                    ip=entry["ip"],
                    country=entry["country"],
                    region=entry["region"],
                )
                for entry in state["sessions"]
            ]
            return types.account.Authorizations(
                authorization_ttl_days=180, authorizations=[self._current_authorization(), *others]
            )
        if isinstance(request, functions.auth.ResetAuthorizationsRequest):
            if state["fresh"]:
                raise errors.FreshResetAuthorisationForbiddenError(request=request)
            state["sessions"] = []
            return True
        if isinstance(request, functions.account.ResetAuthorizationRequest):
            if state["fresh"]:
                raise errors.FreshResetAuthorisationForbiddenError(request=request)
            remaining = [entry for entry in state["sessions"] if int(entry["hash"]) != request.hash]
            if request.hash == 0 or len(remaining) == len(state["sessions"]):
                raise errors.HashInvalidError(request=request)
            state["sessions"] = remaining
            return True
        if isinstance(request, functions.account.GetPasswordRequest):
            return types.account.Password(
                new_algo=types.PasswordKdfAlgoUnknown(),
                new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
                secure_random=b"",
                has_password=bool(state["password"]),
                hint=state["hint"] or None if state["password"] else None,
            )
        if isinstance(request, functions.account.UpdateProfileRequest):
            if request.first_name is not None and not request.first_name.strip():
                raise errors.FirstNameInvalidError(request=request)
            if request.about is not None and len(request.about) > (140 if state["premium"] else 70):
                raise errors.AboutTooLongError(request=request)
            for field, value in (
                ("first_name", request.first_name),
                ("last_name", request.last_name),
                ("bio", request.about),
            ):
                if value is not None:
                    state[field] = value
            return self._user(state)
        if isinstance(request, functions.account.CheckUsernameRequest):
            if not _USERNAME.match(request.username):
                raise errors.UsernameInvalidError(request=request)
            return request.username.lower() not in {name.lower() for name in state["taken"]}
        if isinstance(request, functions.account.UpdateUsernameRequest):
            username = request.username
            if username and not _USERNAME.match(username):
                raise errors.UsernameInvalidError(request=request)
            if username and username.lower() in {name.lower() for name in state["taken"]}:
                raise errors.UsernameOccupiedError(request=request)
            if username == state["username"]:
                raise errors.UsernameNotModifiedError(request=request)
            state["username"] = username
            return self._user(state)
        if isinstance(request, functions.photos.UploadProfilePhotoRequest):
            uploaded = getattr(request, "file", None)
            info = self._uploads().get(getattr(uploaded, "id", None)) if uploaded is not None else None
            if info is None:
                raise errors.PhotoFileMissingError(request=request)
            if info["kind"] is None:
                raise errors.ImageProcessFailedError(request=request)
            if info["width"] is not None and min(info["width"], info["height"]) < PHOTO_MIN_SIDE:
                raise errors.PhotoCropSizeSmallError(request=request)
            state["photos"] += 1
            return types.photos.Photo(photo=types.PhotoEmpty(id=state["photos"]), users=[self._user(state)])
        raise errors.InputMethodInvalidError(request=request)

    async def __call__(self, request: Any, ordered: bool = False, flood_sleep_threshold: Any = None) -> Any:
        if isinstance(request, list | tuple):
            return [await self(item, ordered, flood_sleep_threshold) for item in request]
        from telethon.tl import functions

        known = (
            functions.account.GetAuthorizationsRequest,
            functions.auth.ResetAuthorizationsRequest,
            functions.account.ResetAuthorizationRequest,
            functions.account.GetPasswordRequest,
            functions.account.UpdateProfileRequest,
            functions.account.CheckUsernameRequest,
            functions.account.UpdateUsernameRequest,
            functions.photos.UploadProfilePhotoRequest,
        )
        if not isinstance(request, known):
            try:
                other = super().__call__  # type: ignore[misc] - another mixin's requests (events), if any
            except AttributeError:
                other = None
            if other is not None:
                return await other(request, ordered, flood_sleep_threshold)
        return await self._account_call(type(request).__name__, lambda state: self._handle(request, state))

    # --- 2FA, uploads

    async def edit_2fa(
        self,
        current_password: str | None = None,
        new_password: str | None = None,
        *,
        hint: str = "",
        email: str | None = None,
        email_code_callback: Callable[[int], str] | None = None,
    ) -> bool:
        """Like Telethon's: the current password is checked (if one is set), then the new one is set."""
        from telethon import errors

        if new_password is None and current_password is None:
            return False
        if email and not callable(email_code_callback):
            raise ValueError("email present without email_code_callback")

        def change(state: dict[str, Any]) -> bool:
            current = current_password if state["password"] else None
            if state["password"] and current != state["password"]:
                raise errors.PasswordHashInvalidError(request=None)
            state["password"] = new_password or None
            state["hint"] = hint if new_password else ""
            return True

        return bool(await self._account_call("edit_2fa", change))

    def _uploads(self) -> dict[int, dict[str, Any]]:
        uploads = self.__dict__.get("_fake_uploads")
        if uploads is None:
            uploads = self.__dict__["_fake_uploads"] = {}
        return uploads

    async def upload_file(
        self,
        file: Any,
        *,
        part_size_kb: float | None = None,
        file_size: int | None = None,
        file_name: str | None = None,
        use_cache: type | None = None,
        key: bytes | None = None,
        iv: bytes | None = None,
        progress_callback: Any = None,
    ) -> Any:
        from telethon.tl import types

        if isinstance(file, bytes | bytearray):
            data = bytes(file)
        elif isinstance(file, str):
            with open(file, "rb") as handle:
                data = handle.read()
        elif isinstance(file, io.IOBase) or hasattr(file, "read"):
            data = file.read()
        else:
            raise TypeError(f"cannot upload a {type(file).__name__}")
        uploads = self._uploads()
        file_id = int.from_bytes(hashlib.sha256(data).digest()[:7], "big") + len(uploads)

        def store(state: dict[str, Any]) -> Any:
            uploads[file_id] = _image_info(data)
            parts = max(1, -(-len(data) // (512 * 1024)))
            return types.InputFile(id=file_id, parts=parts, name=file_name or "", md5_checksum="")

        return await self._account_call("upload_file", store)

    # --- messages (only the chat with @SpamBot; others go to the next class, if any)

    async def send_message(
        self,
        entity: Any,
        message: Any = "",
        *,
        reply_to: Any = None,
        attributes: Any = None,
        parse_mode: Any = (),
        formatting_entities: Any = None,
        link_preview: bool = True,
        file: Any = None,
        thumb: Any = None,
        force_document: bool = False,
        clear_draft: bool = False,
        buttons: Any = None,
        silent: bool | None = None,
        background: bool | None = None,
        supports_streaming: bool = False,
        schedule: Any = None,
        comment_to: Any = None,
        nosound_video: bool | None = None,
        send_as: Any = None,
        message_effect_id: int | None = None,
    ) -> Any:
        if not _spambot(entity):
            other = getattr(super(), "send_message", None)
            if other is None:
                raise ValueError(f'Cannot find any entity corresponding to "{entity}"')
            return await other(entity, message, reply_to=reply_to, file=file, buttons=buttons, silent=silent)
        text = str(message)

        def send(state: dict[str, Any]) -> dict[str, Any]:
            now = time.time()
            sent = {"id": state["last_message_id"] + 1, "out": True, "text": text, "at": now}
            chat = [*state["spambot"], sent]
            state["last_message_id"] = sent["id"]
            answer = SPAM_ANSWERS.get(state["spam"], state["spam"])
            if state["spam"] != "silent" and text.strip().startswith("/start"):
                state["last_message_id"] += 1
                chat.append(
                    {"id": state["last_message_id"], "out": False, "text": answer, "at": now + state["spam_delay"]}
                )
            state["spambot"] = chat[-10:]
            return sent

        sent = await self._account_call("send_message:SpamBot", send)
        return _message(sent)

    async def get_messages(
        self,
        entity: Any,
        limit: float | None = None,
        *,
        offset_date: Any = None,
        offset_id: int = 0,
        max_id: int = 0,
        min_id: int = 0,
        add_offset: int = 0,
        search: str | None = None,
        filter: Any = None,  # Telethon's name
        from_user: Any = None,
        wait_time: float | None = None,
        ids: Any = None,
        reverse: bool = False,
        reply_to: int | None = None,
        scheduled: bool = False,
    ) -> Any:
        from telethon.helpers import TotalList

        if not _spambot(entity):
            other = getattr(super(), "get_messages", None)
            if other is None:
                raise ValueError(f'Cannot find any entity corresponding to "{entity}"')
            return await other(entity, limit, offset_id=offset_id, min_id=min_id, max_id=max_id, ids=ids)
        refusal = self._refusal()
        if refusal is not None:
            raise refusal
        now = time.time()
        seen = [entry for entry in account_state(self._phone)["spambot"] if entry["at"] <= now]
        seen.sort(key=lambda entry: entry["id"], reverse=True)
        if min_id:
            seen = [entry for entry in seen if entry["id"] > min_id]
        found = TotalList(_message(entry) for entry in seen[: int(limit) if limit is not None else None])
        found.total = len(seen)
        return found


def _message(entry: dict[str, Any]) -> Any:
    from telethon.tl import types

    return types.Message(
        id=int(entry["id"]),
        peer_id=types.PeerUser(SPAMBOT_ID),
        date=_date(entry["at"]),
        message=str(entry["text"]),
        out=bool(entry["out"]),
    )
