"""The API methods the project needs, answered with Telethon's own TL objects.

`dispatch` takes one request (still wrapped in invokeWithLayer / initConnection / ...), applies the faults a
test asked for (duplicate key, flood wait, ban) and the login rules, and returns the answer object or raises
`RpcFault` (sent to the client as rpc_error). Anything without a handler is a 400 METHOD_NOT_SUPPORTED.

Here: the login, help.*, users.*; account_api.py: authorisations, 2FA settings, profile, photos;
messages_api.py: private chats, @SpamBot, and the update state (updates.getState / getDifference).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from . import account_api, messages_api
from .crypto import DH_G, DH_PRIME, be_bytes, srp_challenge, srp_check
from .rpc import Context, RpcFault, input_user, me, user_object
from .store import Account, normalize_phone

__all__ = ["Context", "RpcFault", "dispatch", "method_name", "serialize", "subscribes"]

BOOL_TRUE, BOOL_FALSE = b"\xb5\x75\x72\x99", b"\x37\x97\x79\xbc"
VECTOR = b"\x15\xc4\xb5\x1c"

WRAPPERS = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest,
    functions.InvokeAfterMsgRequest,
    functions.InvokeAfterMsgsRequest,
)
# Answered without a login, and never flood-waited or refused for a ban (what every connect starts with).
OPEN_METHODS = {"help.getConfig", "help.getNearestDc"}
# Answered without a login.
LOGIN_METHODS = OPEN_METHODS | {"auth.sendCode", "auth.signIn", "auth.checkPassword", "account.getPassword"}


def method_name(request: object) -> str:
    """TL-style name of a request: `help.GetConfigRequest` -> "help.getConfig", `PingRequest` -> "ping"."""
    name = type(request).__name__.removesuffix("Request")
    name = name[:1].lower() + name[1:]
    namespace = type(request).__module__.removeprefix("telethon.tl.functions").strip(".")
    return f"{namespace}.{name}" if namespace else name


def serialize(answer: object) -> bytes:
    if isinstance(answer, bool):
        return BOOL_TRUE if answer else BOOL_FALSE
    if isinstance(answer, list):
        return VECTOR + len(answer).to_bytes(4, "little") + b"".join(serialize(item) for item in answer)
    if isinstance(answer, TLObject):
        return bytes(answer)
    raise TypeError(f"cannot serialise {answer!r}")


def unwrap(ctx: Context, request: object) -> object:
    while isinstance(request, WRAPPERS):
        if isinstance(request, functions.InitConnectionRequest):
            ctx.record.init_connection = {
                "api_id": request.api_id,
                "device_model": request.device_model,
                "system_version": request.system_version,
                "app_version": request.app_version,
                "system_lang_code": request.system_lang_code,
                "lang_pack": request.lang_pack,
                "lang_code": request.lang_code,
            }
        request = request.query
    return request


def subscribes(request: object) -> bool:
    """Whether a request subscribes its connection to updates: any not wrapped in invokeWithoutUpdates."""
    while isinstance(request, WRAPPERS):
        if isinstance(request, functions.InvokeWithoutUpdatesRequest):
            return False
        request = request.query
    return True


def _login_phone(ctx: Context, request: object) -> str | None:
    """The phone a call before login is about: auth.sendCode / auth.signIn name it, 2FA steps follow a signIn."""
    if getattr(request, "phone_number", None):
        return normalize_phone(request.phone_number)  # type: ignore[attr-defined]
    account = ctx.store.account_by_id(ctx.record.password_user)
    return account.phone if account else None


def dispatch(ctx: Context, request: object) -> object:
    """The answer to one (possibly wrapped) request; raises RpcFault for an rpc_error. Call with the lock held."""
    request = unwrap(ctx, request)
    name = method_name(request)
    account = ctx.account
    phone = account.phone if account else _login_phone(ctx, request)
    ctx.store.log_call(name, phone, ctx.record.auth_key.key_id)
    if ctx.duplicate:
        raise RpcFault(406, "AUTH_KEY_DUPLICATED")
    if name not in OPEN_METHODS:
        seconds = ctx.store.take_flood(phone, name)
        if seconds is not None:
            raise RpcFault(420, f"FLOOD_WAIT_{seconds}")
        if account is not None and account.banned:
            raise RpcFault(401, "USER_DEACTIVATED_BAN")
    if account is None and name not in LOGIN_METHODS:
        raise RpcFault(401, "AUTH_KEY_UNREGISTERED")
    if account is not None:
        ctx.record.active = time.time()
        messages_api.deliver_due(ctx.store, account)
    handler = HANDLERS.get(type(request))
    if handler is None:
        raise RpcFault(400, "METHOD_NOT_SUPPORTED")
    return handler(ctx, request)


# --- handlers ----------------------------------------------------------------------------------------------


def _login(ctx: Context, account: Account) -> types.auth.Authorization:
    ctx.record.user_id = account.user_id
    ctx.record.password_user = None
    ctx.record.srp = None
    ctx.record.sent_codes.pop(account.phone, None)
    ctx.record.logged_in = time.time()
    ctx.store.note_peak(account.phone)
    return types.auth.Authorization(user=user_object(ctx, account))


def get_config(ctx: Context, _request: functions.help.GetConfigRequest) -> types.Config:
    now = int(time.time())
    return types.Config(
        date=datetime.fromtimestamp(now, UTC),
        expires=datetime.fromtimestamp(now + 3600, UTC),
        test_mode=False,
        this_dc=ctx.dc_id,
        dc_options=[types.DcOption(id=ctx.dc_id, ip_address=ctx.host, port=ctx.port)],
        dc_txt_domain_name="",
        chat_size_max=200,
        megagroup_size_max=200000,
        forwarded_count_max=100,
        online_update_period_ms=210000,
        offline_blur_timeout_ms=5000,
        offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000,
        notify_cloud_delay_ms=30000,
        notify_default_delay_ms=1500,
        push_chat_period_ms=60000,
        push_chat_limit=2,
        edit_time_limit=172800,
        revoke_time_limit=2147483647,
        revoke_pm_time_limit=2147483647,
        rating_e_decay=2419200,
        stickers_recent_limit=200,
        channels_read_media_period=604800,
        call_receive_timeout_ms=20000,
        call_ring_timeout_ms=90000,
        call_connect_timeout_ms=30000,
        call_packet_timeout_ms=10000,
        me_url_prefix="https://t.me/",
        caption_length_max=1024,
        message_length_max=4096,
        webfile_dc_id=ctx.dc_id,
    )


def get_nearest_dc(ctx: Context, _request: functions.help.GetNearestDcRequest) -> types.NearestDc:
    return types.NearestDc(country="ZZ", this_dc=ctx.dc_id, nearest_dc=ctx.dc_id)


def send_code(ctx: Context, request: functions.auth.SendCodeRequest) -> types.auth.SentCode:
    phone = normalize_phone(request.phone_number)
    if not phone:
        raise RpcFault(400, "PHONE_NUMBER_INVALID")
    account = ctx.store.accounts.get(phone)
    if account is not None and account.banned:
        raise RpcFault(400, "PHONE_NUMBER_BANNED")
    phone_code_hash = os.urandom(9).hex()
    ctx.record.sent_codes[phone] = phone_code_hash
    length = len(account.code) if account else 5
    return types.auth.SentCode(type=types.auth.SentCodeTypeApp(length=length), phone_code_hash=phone_code_hash)


def sign_in(
    ctx: Context, request: functions.auth.SignInRequest
) -> types.auth.Authorization | types.auth.AuthorizationSignUpRequired:
    phone = normalize_phone(request.phone_number)
    if not request.phone_code_hash:
        raise RpcFault(400, "PHONE_CODE_HASH_EMPTY")
    if ctx.record.sent_codes.get(phone) != request.phone_code_hash:
        raise RpcFault(400, "PHONE_CODE_EXPIRED")
    if not request.phone_code:
        raise RpcFault(400, "PHONE_CODE_EMPTY")
    account = ctx.store.accounts.get(phone)
    if account is None:
        return types.auth.AuthorizationSignUpRequired()  # Telethon raises PhoneNumberUnoccupiedError
    if account.banned:
        raise RpcFault(400, "PHONE_NUMBER_BANNED")
    if request.phone_code != account.code:  # exactly the digits: "12 345" is not "12345"
        raise RpcFault(400, "PHONE_CODE_INVALID")
    if account.verifier is not None:
        ctx.record.password_user = account.user_id
        ctx.record.sent_codes.pop(phone, None)
        raise RpcFault(401, "SESSION_PASSWORD_NEEDED")
    return _login(ctx, account)


def _password_account(ctx: Context) -> Account:
    account = ctx.store.account_by_id(ctx.record.password_user or ctx.record.user_id)
    if account is None:
        raise RpcFault(401, "AUTH_KEY_UNREGISTERED")
    return account


def get_password(ctx: Context, _request: functions.account.GetPasswordRequest) -> types.account.Password:
    account = _password_account(ctx)
    ctx.record.new_salt1 = os.urandom(8)  # a new password's salt1 must start with it (the client adds 32 bytes)
    common: dict[str, Any] = {
        "new_algo": types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=ctx.record.new_salt1, salt2=os.urandom(16), g=DH_G, p=be_bytes(DH_PRIME)
        ),
        "new_secure_algo": types.SecurePasswordKdfAlgoSHA512(salt=os.urandom(8)),
        "secure_random": os.urandom(32),
    }
    if account.verifier is None:
        return types.account.Password(has_password=False, **common)
    challenge = srp_challenge(account.verifier)
    ctx.record.srp = challenge
    current = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=account.verifier.salt1, salt2=account.verifier.salt2, g=DH_G, p=be_bytes(DH_PRIME)
    )
    return types.account.Password(
        has_password=True,
        current_algo=current,
        srp_B=challenge.B_bytes,
        srp_id=challenge.srp_id,
        hint=account.hint or None,
        **common,
    )


def check_password(ctx: Context, request: functions.auth.CheckPasswordRequest) -> types.auth.Authorization:
    if ctx.record.password_user is None:
        raise RpcFault(400, "PASSWORD_HASH_INVALID" if ctx.record.user_id else "AUTH_KEY_UNREGISTERED")
    account = _password_account(ctx)
    challenge, ctx.record.srp = ctx.record.srp, None
    srp = request.password
    if not isinstance(srp, types.InputCheckPasswordSRP) or challenge is None or srp.srp_id != challenge.srp_id:
        raise RpcFault(400, "SRP_ID_INVALID")
    assert account.verifier is not None
    if not srp_check(account.verifier, challenge, srp.A, srp.M1):
        raise RpcFault(400, "PASSWORD_HASH_INVALID")
    return _login(ctx, account)


def log_out(ctx: Context, _request: functions.auth.LogOutRequest) -> types.auth.LoggedOut:
    ctx.record.user_id = None
    return types.auth.LoggedOut()


def get_users(ctx: Context, request: functions.users.GetUsersRequest) -> list[types.User]:
    me(ctx)
    found = [input_user(ctx, wanted) for wanted in request.id]
    return [user_object(ctx, who) for who in found if who is not None]


def get_full_user(ctx: Context, request: functions.users.GetFullUserRequest) -> types.users.UserFull:
    me(ctx)
    who = input_user(ctx, request.id)
    if who is None:
        raise RpcFault(400, "USER_ID_INVALID")
    photo = account_api.photo_object(ctx, who.photos[0]) if isinstance(who, Account) and who.photos else None
    full = types.UserFull(
        id=who.user_id,
        settings=types.PeerSettings(),
        notify_settings=types.PeerNotifySettings(),
        common_chats_count=0,
        about=who.about if isinstance(who, Account) else "Send /start to check your account's limits.",
        profile_photo=photo,
    )
    return types.users.UserFull(full_user=full, chats=[], users=[user_object(ctx, who)])


HANDLERS: dict[type, Callable[[Context, Any], object]] = {
    functions.help.GetConfigRequest: get_config,
    functions.help.GetNearestDcRequest: get_nearest_dc,
    functions.auth.SendCodeRequest: send_code,
    functions.auth.SignInRequest: sign_in,
    functions.account.GetPasswordRequest: get_password,
    functions.auth.CheckPasswordRequest: check_password,
    functions.auth.LogOutRequest: log_out,
    functions.users.GetUsersRequest: get_users,
    functions.users.GetFullUserRequest: get_full_user,
    **account_api.HANDLERS,
    **messages_api.HANDLERS,
}
