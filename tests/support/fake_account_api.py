"""The fake Telegram's account API: the requests account operations send (see `fake_telegram`).

`AccountApiMixin` gives `FakeClient` what Telethon's client offers for them, answering like Telegram does:
`client(request)` for Telethon's real request classes (GetAuthorizationsRequest, ResetAuthorizationsRequest,
ResetAuthorizationRequest, GetPasswordRequest, UpdatePasswordSettingsRequest, UpdateProfileRequest,
CheckUsernameRequest, UpdateUsernameRequest, UploadProfilePhotoRequest), `upload_file`, and `send_message` /
`get_messages` with @SpamBot. The 2FA password is checked and kept by SRP, as Telegram does (`fake_password`).
The fleet's own authorisation was made 30 days ago, or an hour ago for an account whose script says `fresh`
(which Telegram refuses to end others from: FRESH_RESET_AUTHORISATION_FORBIDDEN). Answers are Telethon's own TL
types; refusals are Telethon's own error classes.
What each account is like, and what Telegram saw of it, is its state (`fake_account_state`: the phone's script,
stored in the fake's Redis).

The account-API calls (what the state's `flood` counts) are `client(request)`, `upload_file` and
`send_message`; `get_messages` only reads. The phone's `connect` mode counts too: "banned" makes every account
call raise USER_DEACTIVATED_BAN, "unauthorized" AUTH_KEY_UNREGISTERED; a client that is not connected gets
ConnectionError, as Telethon's does.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import re
import struct
import time
from collections.abc import Callable
from typing import Any

from tests.support import fake_password
from tests.support.fake_account_state import account_state, update_state

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

    def _current_authorization(self, state: dict[str, Any]) -> Any:
        from telethon.tl import types

        device = getattr(self.spec, "device", None)
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        age = datetime.timedelta(hours=1) if state["fresh"] else datetime.timedelta(days=30)
        return types.Authorization(
            hash=0,
            device_model=device.device_model if device is not None else "Fleet worker",
            platform="",
            system_version=device.system_version if device is not None else "",
            api_id=int(self.spec.api_id),
            app_name="Fleet",
            app_version=device.app_version if device is not None else "",
            date_created=now - age,
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
                authorization_ttl_days=180, authorizations=[self._current_authorization(state), *others]
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
            return fake_password.get_password(state)
        if isinstance(request, functions.account.UpdatePasswordSettingsRequest):
            return fake_password.update_password_settings(state, request)
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
            functions.account.UpdatePasswordSettingsRequest,
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

    # --- uploads

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
