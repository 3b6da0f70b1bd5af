"""Encryption of secrets and identities (sessions, API hashes, passwords, proxy credentials, phone numbers) at
rest and on the wire.

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from SECRET_KEY by HKDF, so any long random string
works as SECRET_KEY. SECRET_KEY stays on the control host (workers get what is theirs sealed to their own
keys: `backend.sealing`). A phone number is also stored as a keyed hash (`lookup`, HMAC-SHA256 under another
derived key), so that "is this phone known?" is answered without storing or decrypting any number.

Keys rotate: SECRET_KEY may list several keys, comma-separated. The first encrypts and hashes; all of them
decrypt, and lookups match a hash under any of them (`lookups`). `run_cli.py rekey` then re-encrypts and
re-hashes everything under the first, after which the old keys can be dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"tg-fleet-control-plane"
_INFO = b"fleet-secrets-v1"
_LOOKUP_INFO = b"fleet-lookup-v1"


class SecretError(ValueError):
    """A secret could not be decrypted: corrupted, or encrypted under another SECRET_KEY."""


def split_keys(secret_key: str) -> list[str]:
    """SECRET_KEY may list several keys, comma-separated: the first encrypts, every one decrypts (rotation)."""
    return [key.strip() for key in secret_key.split(",") if key.strip()]


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        keys = split_keys(secret_key)
        if not keys:
            raise ValueError("no secret key given")
        derived = [HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(k.encode()) for k in keys]
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(d)) for d in derived])
        self._lookup_keys = [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_LOOKUP_INFO).derive(k.encode()) for k in keys
        ]

    @property
    def rotating(self) -> bool:
        """Whether older keys are still accepted (SECRET_KEY lists more than one)."""
        return len(self._lookup_keys) > 1

    def lookup(self, value: str) -> str:
        """A keyed hash of `value` (64 hex characters) under the current key: equal values, equal hashes."""
        return hmac.new(self._lookup_keys[0], value.encode(), hashlib.sha256).hexdigest()

    def lookups(self, value: str) -> list[str]:
        """The hashes of `value` under every key, current first: what a lookup must match while keys rotate."""
        return [hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for key in self._lookup_keys]

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def rotate(self, token: str) -> str:
        """`token` re-encrypted under the current key (whichever listed key it was encrypted with)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretError(
                "cannot decrypt a secret: it is corrupted or was encrypted with a key SECRET_KEY does not list"
            ) from None

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretError(
                "cannot decrypt a secret: it is corrupted or was encrypted with another SECRET_KEY"
            ) from None


def mask_secret(value: str, keep: int = 4) -> str:
    """`abcd…wxyz`-style mask for showing that a secret is present without showing it."""
    if len(value) <= keep * 2:
        return "*" * len(value)
    return f"{value[:keep]}…{value[-keep:]}"
