"""The account's own settings: its authorisations (one per auth key logged in as it), its 2FA password, its
profile (names, bio, username) and profile photos (uploaded in parts first), with Telegram's error names.

- account.getAuthorizations lists the current authorisation first (hash 0, `current`); account.resetAuthorization
  and auth.resetAuthorizations end others: their keys get AUTH_KEY_UNREGISTERED, their live connections close.
  With `Store.fresh_reset_window` set, a key logged in less than that long ago may not (406
  FRESH_RESET_AUTHORISATION_FORBIDDEN, as Telegram answers within 24 hours of a login).
- account.updatePasswordSettings checks the current password by SRP against the challenge of the last
  account.getPassword (an account without one sends inputCheckPasswordEmpty), then keeps the new verifier.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

from telethon.tl import functions, types

from .crypto import DH_G, DH_PRIME, SrpVerifier, be_bytes, srp_check
from .rpc import BOTS, Context, RpcFault, input_user, me, timestamp, user_object
from .store import Account, AuthKeyRecord, ProfilePhoto, random_long

ABOUT_MAX, ABOUT_MAX_PREMIUM = 70, 140
NAME_MAX = 64
USERNAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_)){3,30}[A-Za-z0-9]")  # 5-32, no "__", no "_" at the end
PART_MAX = 512 * 1024
PARTS_MAX = 4000
AUTHORIZATION_TTL_DAYS = 180

# --- authorisations -----------------------------------------------------------------------------------------


def _platform(system_version: str) -> str:
    system = system_version.lower()
    for word, platform in (("android", "android"), ("ios", "ios"), ("mac", "macos"), ("windows", "windows")):
        if word in system:
            return platform
    return "linux" if "linux" in system else "unknown"


def authorization_object(record: AuthKeyRecord, *, current: bool) -> types.Authorization:
    sent = record.init_connection or {}
    info: dict[str, Any] = {
        "device_model": sent.get("device_model") or "Unknown",
        "system_version": sent.get("system_version") or "",
        "app_version": sent.get("app_version") or "",
        "api_id": sent.get("api_id") or 0,
        "ip": "127.0.0.1",
        "country": "Loopback",
        "region": "",
        "official_app": False,
    }
    info["platform"] = _platform(info["system_version"])
    info["app_name"] = f"app {info['api_id']}"
    info.update(record.device)
    return types.Authorization(
        hash=0 if current else record.hash,
        device_model=info["device_model"],
        platform=info["platform"],
        system_version=info["system_version"],
        api_id=info["api_id"],
        app_name=info["app_name"],
        app_version=info["app_version"],
        date_created=timestamp(record.logged_in or record.created),
        date_active=timestamp(record.active),
        ip=info["ip"],
        country=info["country"],
        region=info["region"],
        current=current or None,
        official_app=info["official_app"] or None,
    )


def get_authorizations(ctx: Context, _request: functions.account.GetAuthorizationsRequest) -> Any:
    account = me(ctx)
    others = [r for r in ctx.store.records_of(account.user_id) if r is not ctx.record]
    others.sort(key=lambda r: r.active, reverse=True)
    listed = [authorization_object(ctx.record, current=True)]
    listed += [authorization_object(record, current=False) for record in others]
    return types.account.Authorizations(authorization_ttl_days=AUTHORIZATION_TTL_DAYS, authorizations=listed)


def _may_reset(ctx: Context) -> None:
    logged_in = ctx.record.logged_in or ctx.record.created
    if time.time() - logged_in < ctx.store.fresh_reset_window:
        raise RpcFault(406, "FRESH_RESET_AUTHORISATION_FORBIDDEN")


def reset_authorization(ctx: Context, request: functions.account.ResetAuthorizationRequest) -> bool:
    account = me(ctx)
    record = next(
        (r for r in ctx.store.records_of(account.user_id) if r.hash == request.hash and r is not ctx.record), None
    )
    if request.hash == 0 or record is None:
        raise RpcFault(400, "HASH_INVALID")
    _may_reset(ctx)
    ctx.store.unbind(record)
    return True


def reset_authorizations(ctx: Context, _request: functions.auth.ResetAuthorizationsRequest) -> bool:
    account = me(ctx)
    _may_reset(ctx)
    for record in ctx.store.records_of(account.user_id):
        if record is not ctx.record:
            ctx.store.unbind(record)
    return True


# --- the 2FA password ---------------------------------------------------------------------------------------


def _check_current_password(ctx: Context, account: Account, check: object) -> None:
    challenge, ctx.record.srp = ctx.record.srp, None
    if account.verifier is None:
        if not isinstance(check, types.InputCheckPasswordEmpty):
            raise RpcFault(400, "PASSWORD_HASH_INVALID")
        return
    if not isinstance(check, types.InputCheckPasswordSRP):
        raise RpcFault(400, "PASSWORD_HASH_INVALID")
    if challenge is None or check.srp_id != challenge.srp_id:
        raise RpcFault(400, "SRP_ID_INVALID")
    if not srp_check(account.verifier, challenge, check.A, check.M1):
        raise RpcFault(400, "PASSWORD_HASH_INVALID")


def _new_verifier(ctx: Context, settings: types.account.PasswordInputSettings) -> SrpVerifier:
    algo = settings.new_algo
    if not isinstance(algo, types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow):
        raise RpcFault(400, "NEW_SETTINGS_INVALID")
    if algo.g != DH_G or algo.p != be_bytes(DH_PRIME) or len(algo.salt2) < 8:
        raise RpcFault(400, "NEW_SETTINGS_INVALID")
    if ctx.record.new_salt1 is None or not algo.salt1.startswith(ctx.record.new_salt1) or len(algo.salt1) < 32:
        raise RpcFault(400, "NEW_SALT_INVALID")
    v = int.from_bytes(settings.new_password_hash, "big")
    if len(settings.new_password_hash) != 256 or not 1 < v < DH_PRIME - 1:
        raise RpcFault(400, "NEW_SETTINGS_INVALID")
    return SrpVerifier(algo.salt1, algo.salt2, v)


def update_password_settings(ctx: Context, request: functions.account.UpdatePasswordSettingsRequest) -> bool:
    account = me(ctx)
    _check_current_password(ctx, account, request.password)
    settings = request.new_settings
    if settings.new_password_hash is None:  # only the hint or e-mail: needs a password to exist
        if account.verifier is None:
            raise RpcFault(400, "PASSWORD_MISSING")
        if settings.hint is not None:
            account.hint = settings.hint
        return True
    if settings.new_password_hash == b"":  # remove the password
        account.verifier, account.password, account.hint = None, None, ""
        return True
    verifier = _new_verifier(ctx, settings)
    account.verifier, account.password, account.hint = verifier, None, settings.hint or ""
    return True


# --- profile ------------------------------------------------------------------------------------------------


def update_profile(ctx: Context, request: functions.account.UpdateProfileRequest) -> types.User:
    account = me(ctx)
    first = request.first_name.strip() if request.first_name is not None else None
    last = request.last_name.strip() if request.last_name is not None else None
    about = request.about.strip() if request.about is not None else None
    if first is not None and not 0 < len(first) <= NAME_MAX:
        raise RpcFault(400, "FIRSTNAME_INVALID")
    if last is not None and len(last) > NAME_MAX:
        raise RpcFault(400, "LASTNAME_INVALID")
    if about is not None and len(about) > (ABOUT_MAX_PREMIUM if account.premium else ABOUT_MAX):
        raise RpcFault(400, "ABOUT_TOO_LONG")
    if first is not None:
        account.first_name = first
    if last is not None:
        account.last_name = last
    if about is not None:
        account.about = about
    return user_object(ctx, account)


def _username_taken(ctx: Context, username: str, account: Account) -> bool:
    wanted = username.lower()
    if any(bot.username.lower() == wanted for bot in BOTS.values()):
        return True
    return any(
        other is not account and (other.username or "").lower() == wanted for other in ctx.store.accounts.values()
    )


def update_username(ctx: Context, request: functions.account.UpdateUsernameRequest) -> types.User:
    account = me(ctx)
    username = request.username
    if username and not USERNAME.fullmatch(username):
        raise RpcFault(400, "USERNAME_INVALID")
    if (username or None) == account.username:
        raise RpcFault(400, "USERNAME_NOT_MODIFIED")
    if username and _username_taken(ctx, username, account):
        raise RpcFault(400, "USERNAME_OCCUPIED")
    account.username = username or None
    return user_object(ctx, account)


def check_username(ctx: Context, request: functions.account.CheckUsernameRequest) -> bool:
    account = me(ctx)
    if not USERNAME.fullmatch(request.username):
        raise RpcFault(400, "USERNAME_INVALID")
    return request.username.lower() == (account.username or "").lower() or not _username_taken(
        ctx, request.username, account
    )


# --- uploads and profile photos -----------------------------------------------------------------------------


def _save_part(ctx: Context, file_id: int, part: int, data: bytes, total: int | None = None) -> bool:
    me(ctx)
    if not 0 <= part < PARTS_MAX or (total is not None and not part < total <= PARTS_MAX):
        raise RpcFault(400, "FILE_PART_INVALID")
    if not data:
        raise RpcFault(400, "FILE_PART_EMPTY")
    if len(data) > PART_MAX:
        raise RpcFault(400, "FILE_PART_TOO_BIG")
    ctx.record.uploads.setdefault(file_id, {})[part] = data
    return True


def save_file_part(ctx: Context, request: functions.upload.SaveFilePartRequest) -> bool:
    return _save_part(ctx, request.file_id, request.file_part, request.bytes)


def save_big_file_part(ctx: Context, request: functions.upload.SaveBigFilePartRequest) -> bool:
    return _save_part(ctx, request.file_id, request.file_part, request.bytes, request.file_total_parts)


def _uploaded(ctx: Context, file: object) -> bytes:
    """The bytes of an InputFile / InputFileBig this auth key uploaded."""
    if not isinstance(file, types.InputFile | types.InputFileBig):
        raise RpcFault(400, "PHOTO_FILE_MISSING")
    parts = ctx.record.uploads.get(file.id, {})
    for number in range(file.parts):
        if number not in parts:
            raise RpcFault(400, f"FILE_PART_{number}_MISSING")
    data = b"".join(parts[number] for number in range(file.parts))
    checksum = getattr(file, "md5_checksum", "")
    if checksum and hashlib.md5(data).hexdigest() != checksum.lower():  # noqa: S324 - the protocol's checksum
        raise RpcFault(400, "MD5_CHECKSUM_INVALID")
    return data


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """("png" | "jpeg", width, height) of a well-formed PNG (IHDR with its CRC, IEND) or JPEG (a frame header,
    EOI); None for anything else, which Telegram cannot process into a photo."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 33:
        length, kind = struct.unpack(">I4s", data[8:16])
        header, crc = data[16 : 16 + length], data[16 + length : 20 + length]
        if kind != b"IHDR" or length != 13 or zlib.crc32(kind + header).to_bytes(4, "big") != crc:
            return None
        width, height = struct.unpack(">II", header[:8])
        ok = width and height and b"IDAT" in data and data.endswith(b"IEND\xaeB`\x82")
        return ("png", width, height) if ok else None
    if data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"):
        at = 2
        while at + 4 <= len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and at + 9 <= len(data):
                height, width = struct.unpack(">HH", data[at + 5 : at + 9])
                return ("jpeg", width, height) if width and height else None
            at += 2 + length
    return None


def photo_object(ctx: Context, photo: ProfilePhoto) -> types.Photo:
    return types.Photo(
        id=photo.id,
        access_hash=photo.access_hash,
        file_reference=struct.pack("<q", photo.id)[:8],
        date=timestamp(photo.date),
        sizes=[types.PhotoSize(type="c", w=photo.width, h=photo.height, size=len(photo.data))],
        dc_id=ctx.dc_id,
    )


def upload_profile_photo(ctx: Context, request: functions.photos.UploadProfilePhotoRequest) -> types.photos.Photo:
    account = me(ctx)
    if request.bot is not None:
        raise RpcFault(400, "BOT_INVALID")
    if request.video is not None:
        raise RpcFault(400, "VIDEO_FILE_INVALID")  # profile videos are not modelled here
    data = _uploaded(ctx, request.file)
    size = image_size(data)
    if size is None:
        raise RpcFault(400, "IMAGE_PROCESS_FAILED")
    kind, width, height = size
    photo = ProfilePhoto(random_long(), random_long(), time.time(), kind, width, height, data)
    account.photos.insert(0, photo)
    ctx.record.uploads.pop(request.file.id, None)
    return types.photos.Photo(photo=photo_object(ctx, photo), users=[user_object(ctx, account)])


def get_user_photos(ctx: Context, request: functions.photos.GetUserPhotosRequest) -> types.photos.Photos:
    who = input_user(ctx, request.user_id)
    if who is None:
        raise RpcFault(400, "USER_ID_INVALID")
    photos = who.photos if isinstance(who, Account) else []
    chosen = photos[request.offset :][: request.limit or None]
    return types.photos.Photos(photos=[photo_object(ctx, p) for p in chosen], users=[user_object(ctx, who)])


HANDLERS: dict[type, Callable[[Context, Any], object]] = {
    functions.account.GetAuthorizationsRequest: get_authorizations,
    functions.account.ResetAuthorizationRequest: reset_authorization,
    functions.auth.ResetAuthorizationsRequest: reset_authorizations,
    functions.account.UpdatePasswordSettingsRequest: update_password_settings,
    functions.account.UpdateProfileRequest: update_profile,
    functions.account.UpdateUsernameRequest: update_username,
    functions.account.CheckUsernameRequest: check_username,
    functions.upload.SaveFilePartRequest: save_file_part,
    functions.upload.SaveBigFilePartRequest: save_big_file_part,
    functions.photos.UploadProfilePhotoRequest: upload_profile_photo,
    functions.photos.GetUserPhotosRequest: get_user_photos,
}
