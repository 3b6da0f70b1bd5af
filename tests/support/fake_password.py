"""The fake Telegram's 2FA password, kept and checked as Telegram does: by SRP, never the password itself.

`account.getPassword` (`get_password`) hands out the SRP parameters and a challenge; `account.updatePasswordSettings`
(`update_password_settings`) checks the client's proof of the current password against the last challenge and keeps
the new password's verifier (v = g^x mod p). The arithmetic is the loopback MTProto server's
(`tests/support/mtproto_server/crypto.py`).

In an account's state (`fake_account_state`), `password` is None (no password), the clear password the phone's
script gives (turned into a verifier at the first getPassword, as Telegram would hold it), or the verifier
`{"salt1", "salt2", "v"}` (hex); `srp` is the last challenge `{"id", "b", "B"}`. Tests ask which password is set
with `password_matches(state, password)`.
"""

from __future__ import annotations

import os
from typing import Any

from sandbox.mtproto.crypto import (
    DH_G,
    DH_PRIME,
    SrpChallenge,
    SrpVerifier,
    be_bytes,
    password_hash,
    srp_challenge,
    srp_check,
)


def _verifier(stored: Any) -> SrpVerifier | None:
    if not stored:
        return None
    if isinstance(stored, str):
        return SrpVerifier.create(stored)
    return SrpVerifier(bytes.fromhex(stored["salt1"]), bytes.fromhex(stored["salt2"]), int(stored["v"], 16))


def _stored(verifier: SrpVerifier) -> dict[str, str]:
    return {"salt1": verifier.salt1.hex(), "salt2": verifier.salt2.hex(), "v": format(verifier.v, "x")}


def password_matches(state: dict[str, Any], password: str | None) -> bool:
    """Whether `password` is the account's 2FA password now (None: it has none)."""
    stored = state.get("password")
    if not stored or password is None:
        return not stored and password is None
    if isinstance(stored, str):
        return stored == password
    verifier = _verifier(stored)
    assert verifier is not None
    return pow(DH_G, password_hash(password, verifier.salt1, verifier.salt2), DH_PRIME) == verifier.v


def _algo(salt1: bytes, salt2: bytes) -> Any:
    from telethon.tl import types

    return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=salt1, salt2=salt2, g=DH_G, p=be_bytes(DH_PRIME)
    )


def get_password(state: dict[str, Any]) -> Any:
    """account.getPassword: the account's SRP parameters and a new challenge (kept in `state`)."""
    from telethon.tl import types

    new_salt1 = os.urandom(8)
    state["new_salt1"] = new_salt1.hex()
    common = {
        "new_algo": _algo(new_salt1, os.urandom(16)),
        "new_secure_algo": types.SecurePasswordKdfAlgoSHA512(os.urandom(8)),
        "secure_random": os.urandom(32),
    }
    verifier = _verifier(state.get("password"))
    if verifier is None:
        state["srp"] = None
        return types.account.Password(has_password=False, **common)
    state["password"] = _stored(verifier)
    challenge = srp_challenge(verifier)
    state["srp"] = {"id": challenge.srp_id, "b": format(challenge.b, "x"), "B": format(challenge.B, "x")}
    return types.account.Password(
        has_password=True,
        current_algo=_algo(verifier.salt1, verifier.salt2),
        srp_B=challenge.B_bytes,
        srp_id=challenge.srp_id,
        hint=state.get("hint") or None,
        **common,
    )


def _check_current(state: dict[str, Any], request: Any) -> None:
    from telethon import errors
    from telethon.tl import types

    challenge, state["srp"] = state.get("srp"), None
    verifier = _verifier(state.get("password"))
    check = request.password
    if verifier is None:
        if not isinstance(check, types.InputCheckPasswordEmpty):
            raise errors.PasswordHashInvalidError(request=request)
        return
    if not isinstance(check, types.InputCheckPasswordSRP):
        raise errors.PasswordHashInvalidError(request=request)
    if challenge is None or check.srp_id != challenge["id"]:
        raise errors.SrpIdInvalidError(request=request)
    asked = SrpChallenge(challenge["id"], int(challenge["b"], 16), int(challenge["B"], 16))
    if not srp_check(verifier, asked, check.A, check.M1):
        raise errors.PasswordHashInvalidError(request=request)


def update_password_settings(state: dict[str, Any], request: Any) -> bool:
    """account.updatePasswordSettings: the current password proven (or none set), then the new settings kept."""
    from telethon import errors
    from telethon.tl import types

    _check_current(state, request)
    settings = request.new_settings
    if settings.new_password_hash is None:  # only the hint: a password must exist
        if not state.get("password"):
            raise errors.PasswordMissingError(request=request)
        state["hint"] = settings.hint or ""
        return True
    if settings.new_password_hash == b"":  # the password removed
        state["password"], state["hint"] = None, ""
        return True
    algo = settings.new_algo
    if not isinstance(algo, types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow):
        raise errors.NewSettingsInvalidError(request=request)
    if algo.g != DH_G or algo.p != be_bytes(DH_PRIME) or len(settings.new_password_hash) != 256:
        raise errors.NewSettingsInvalidError(request=request)
    if not algo.salt1.startswith(bytes.fromhex(state.get("new_salt1") or "ff")) or len(algo.salt1) < 32:
        raise errors.NewSaltInvalidError(request=request)
    verifier = SrpVerifier(algo.salt1, algo.salt2, int.from_bytes(settings.new_password_hash, "big"))
    state["password"], state["hint"] = _stored(verifier), settings.hint or ""
    return True
