"""Secrets sealed to the one process that uses them (an anonymous public-key box, like libsodium's sealed box).

The control plane seals a secret (session string, API hash, 2FA password, proxy credentials) to a worker's public key
and only that worker's private key opens it; a worker seals what it sends back (a new session) to the control plane's
public key. Redis and the database only ever see the token.

    pair = load_or_create(path)           # a worker; the control plane: KeyPair.derive(one_secret_key, "control-plane")
    token = seal(pair.public_key, session, context="account:17:session")
    open_sealed(pair, token, context="account:17:session") == session

API: `KeyPair` (`generate()`, `derive(secret, purpose)`, `from_private_bytes(b)`, `private_bytes()`, `.public_key`,
`.fingerprint`), `load_or_create(path)`, `seal(public_key, plaintext, context="")`, `open_sealed(key, token,
context="")`, `is_sealed(value)`, `parse_public_key(text)`, `fingerprint(public_key)`. Errors: `SealError`,
`KeyFileError` (both ValueError; one line, never key material or plaintext). Sealing hides, it does not sign: anyone
with a public key can seal to it, so who sent a value must be known some other way. `derive` gives another key pair
whenever its secret changes (pass one key, not SECRET_KEY's comma-separated list).

Construction: a fresh ephemeral X25519 key per message; key = HKDF-SHA256(shared secret, salt = ephemeral public ||
recipient public, info = b"fleet-seal-v1"); ChaCha20-Poly1305 with `context` (UTF-8) as associated data, so a value
sealed for "account:17:session" opens for nothing else. The nonce is 12 zero bytes, not sent: each message has its
own key, so a (key, nonce) pair never repeats; a random nonce would add 12 bytes and no safety.

Wire format (JSON- and Redis-safe text): "s1." + urlsafe base64, no padding, of (ephemeral public key (32 bytes) ||
ciphertext || tag (16 bytes)); "s<digits>." is the version, an unknown one is refused by name. A public key is the
same base64 of its 32 raw bytes (43 characters); its fingerprint, for admins to compare, is the first 16 hex
characters of SHA-256 of those bytes. A key file holds the private key's 32 raw bytes in the same base64, one line,
mode 0600 (text, so it can be pasted into a secret store).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "s1"
_INFO = b"fleet-seal-v1"
_DERIVE_SALT = b"fleet-seal-derive-v1"
_NONCE = bytes(12)  # the key is single-use (fresh ephemeral key per message): see the module docstring
_KEY_LEN = 32
_TAG_LEN = 16
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_SEALED = re.compile(r"s([0-9]+)\.([A-Za-z0-9_-]*)")


class SealError(ValueError):
    """A sealed value cannot be opened: wrong key, wrong context, tampered, unknown version or malformed."""


class KeyFileError(ValueError):
    """A private key file is unsafe (readable by others, not a regular file) or malformed."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    """Strict urlsafe base64 without padding; ValueError unless `text` is the canonical encoding of some bytes."""
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not urlsafe base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64e(data) != text:
        raise ValueError("not canonical base64")
    return data


class KeyPair:
    """An X25519 key pair. Its repr shows the fingerprint only; the private key leaves only via `private_bytes()`."""

    __slots__ = ("_private", "_public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self._public = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> KeyPair:
        if len(data) != _KEY_LEN:
            raise ValueError(f"a private key is {_KEY_LEN} bytes, got {len(data)}")
        return cls(X25519PrivateKey.from_private_bytes(bytes(data)))

    @classmethod
    def derive(cls, secret: str, purpose: str) -> KeyPair:
        """The same key pair every time for the same (secret, purpose), e.g. (SECRET_KEY, "control-plane")."""
        if not secret or not purpose:
            raise ValueError("derive needs a non-empty secret and purpose")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY_LEN, salt=_DERIVE_SALT, info=purpose.encode())
        return cls.from_private_bytes(hkdf.derive(secret.encode()))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    @property
    def public_key(self) -> str:
        return _b64e(self._public)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self._public).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"KeyPair(fingerprint={self.fingerprint})"


def parse_public_key(text: str) -> str:
    """`text` as a canonical public key string; ValueError if it is not one (or is a degenerate, low-order point)."""
    if not isinstance(text, str):
        raise ValueError("a public key is a string")
    text = text.strip()
    try:
        raw = _b64d(text)
    except ValueError:
        raise ValueError("a public key is urlsafe base64 without padding (A-Z a-z 0-9 - _)") from None
    if len(raw) != _KEY_LEN:
        raise ValueError(f"a public key is {_KEY_LEN} bytes (43 characters), got {len(raw)} bytes")
    try:  # a low-order point gives an all-zero shared secret with every private key, which cryptography refuses
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise ValueError("a public key is a degenerate (low-order) point") from None
    return text


def fingerprint(public_key: str) -> str:
    """First 16 hex characters of SHA-256 of the raw public key: short enough to read out, compare by eye."""
    return hashlib.sha256(_b64d(parse_public_key(public_key))).hexdigest()[:16]


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> ChaCha20Poly1305:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY_LEN, salt=ephemeral + recipient, info=_INFO)
    return ChaCha20Poly1305(hkdf.derive(shared))


def seal(public_key: str, plaintext: str, context: str = "") -> str:
    """`plaintext` sealed to `public_key`, bound to `context`: a text token only that key pair opens."""
    recipient = _b64d(parse_public_key(public_key))
    try:
        data, aad = plaintext.encode(), context.encode()
    except UnicodeEncodeError:
        raise ValueError("plaintext and context must be valid Unicode text (no lone surrogates)") from None
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    box = _key(shared, ephemeral_public, recipient)
    return f"{VERSION}." + _b64e(ephemeral_public + box.encrypt(_NONCE, data, aad))


def open_sealed(key: KeyPair, token: str, context: str = "") -> str:
    """The plaintext of `token`; SealError (one line, nothing secret) if it cannot be opened with `key`/`context`."""
    match = _SEALED.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise SealError("not a sealed value")
    if match.group(1) != VERSION[1:]:
        raise SealError(f"sealed value of unknown version s{match.group(1)} (this build reads {VERSION})")
    try:
        data = _b64d(match.group(2))
    except ValueError:
        raise SealError("sealed value is malformed (bad base64)") from None
    if len(data) < _KEY_LEN + _TAG_LEN:
        raise SealError("sealed value is malformed (too short)")
    ephemeral, ciphertext = data[:_KEY_LEN], data[_KEY_LEN:]
    try:
        shared = key._private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        plaintext = _key(shared, ephemeral, key._public).decrypt(_NONCE, ciphertext, context.encode())
        return plaintext.decode()
    except (InvalidTag, ValueError):
        raise SealError("cannot open sealed value: sealed to another key, for another context, or tampered") from None


def is_sealed(value: object) -> bool:
    """Whether `value` has the shape of a sealed token, of any version (so a newer one is not taken for plaintext)."""
    match = _SEALED.fullmatch(value) if isinstance(value, str) else None
    return match is not None and len(match.group(2)) >= (4 * (_KEY_LEN + _TAG_LEN) + 2) // 3


def _read_key_file(path: Path) -> KeyPair | None:
    """The key pair in `path`, None if there is no such file; KeyFileError if it is unsafe or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(f"key file {path} is accessible by group or others (mode {mode & 0o777:04o})")
        content = os.read(fd, 256)
    finally:
        os.close(fd)
    try:
        return KeyPair.from_private_bytes(_b64d(content.decode("ascii").strip()))
    except ValueError:  # bad UTF-8/ASCII, bad base64, wrong length
        raise KeyFileError(f"key file {path} is malformed: expected one line of urlsafe base64 of 32 bytes") from None


def load_or_create(path: Path) -> KeyPair:
    """The key pair stored in `path`, created (mode 0600, parent 0700) if missing; KeyFileError if unsafe."""
    path = Path(path)
    pair = _read_key_file(path)
    if pair is not None:
        return pair
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pair = KeyPair.generate()  # written to a private temporary file, then linked into place
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_b64e(pair.private_bytes()).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.link(temp, path)  # atomic and never overwrites: a reader sees no file or a whole one
            return pair
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            temp.unlink(missing_ok=True)
    except OSError as e:
        raise KeyFileError(f"cannot create key file {path}: {e.strerror}") from None
    pair = _read_key_file(path)
    if pair is None:
        raise KeyFileError(f"key file {path} exists but cannot be opened (a dangling symlink?)")
    return pair


def replace_key_file(path: Path, pair: KeyPair) -> None:
    """Put `pair` into `path` in place of what was there (a rotation): written to a private temporary file
    beside it, then renamed over it, so a reader sees the old key or the new one, whole. KeyFileError if not."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_b64e(pair.private_bytes()).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write key file {path}: {e.strerror}") from None
