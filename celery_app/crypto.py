"""Encryption of secrets and identities (sessions, API hashes, passwords, proxy credentials, phone numbers) at
rest and on the wire.

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from SECRET_KEY by HKDF, so any long random string
works as SECRET_KEY. The control host and every worker share the same SECRET_KEY. A phone number is also
stored as a keyed hash (`lookup`, HMAC-SHA256 under another derived key), so that "is this phone known?" is
answered without storing or decrypting any number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"tg-fleet-control-plane"
_INFO = b"fleet-secrets-v1"
_LOOKUP_INFO = b"fleet-lookup-v1"


class SecretError(ValueError):
    """A secret could not be decrypted: corrupted, or encrypted under another SECRET_KEY."""


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._lookup_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_LOOKUP_INFO).derive(
            secret_key.encode()
        )

    def lookup(self, value: str) -> str:
        """A keyed hash of `value` (64 hex characters): equal values give equal hashes, nothing else leaks."""
        return hmac.new(self._lookup_key, value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretError(
                "cannot decrypt a secret: it is corrupted or was encrypted with another SECRET_KEY"
            ) from None

    def encrypt_optional(self, plaintext: str | None) -> str | None:
        return None if plaintext is None else self.encrypt(plaintext)

    def decrypt_optional(self, token: str | None) -> str | None:
        return None if token is None else self.decrypt(token)


def mask_secret(value: str, keep: int = 4) -> str:
    """`abcd…wxyz`-style mask for showing that a secret is present without showing it."""
    if len(value) <= keep * 2:
        return "*" * len(value)
    return f"{value[:keep]}…{value[-keep:]}"
